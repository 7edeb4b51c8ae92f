"""benchmarks/sim_cell.sh / sim_arms.sh: the by-hand simulator cells of docs/results.md section 9 run with the suite's
settings, take extra flags (the last value of a repeated flag wins), resume, run named arms from the bench's BC of each
seed, and refuse bad arguments in one line."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from helpers import make_bc_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sim_cell.sh"
ENV = {"FLOWFT": f"{shlex.quote(sys.executable)} -m flowft", "PATH": "/usr/bin:/bin"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**ENV, "PYTHONPATH": str(ROOT / "src")})


def test_sim_cell_runs_with_the_suite_settings_and_the_extra_flags_then_resumes(tmp_path):
    bc = make_bc_checkpoint(tmp_path, steps=60)
    small = ["--run.env-steps", "160", "--run.start-training", "80", "--run.eval-every", "160",
             "--run.eval-episodes", "8", "--run.ckpt-every", "80", "--algo.best-of-n", "4",
             "--algo.bon-after-updates", "10"]
    done = _run(str(tmp_path / "out"), "toy", "ogpo-plus-ca", "cell", "0", str(bc), *small)
    run = tmp_path / "out" / "cell"
    assert done.returncode == 0, done.stderr + (tmp_path / "out" / "cell.log").read_text()[-2000:]
    assert (run / "DONE").exists()
    cfg = json.loads((run / "config.json").read_text())
    r, a = cfg["run"], cfg["algo"]
    # the suite's settings, except where an extra flag repeated one (env steps, eval cadence): the last value wins
    assert (r["env_steps"], r["eval_every"], r["eval_episodes"], r["ckpt_every"]) == (160, 160, 8, 80)
    assert (r["eval_envs"], r["eval_samplers"], r["vectorization"], r["threads"], r["seed"]) == (8, ["ode"], "sync", 1, 0)
    assert (a["best_of_n"], a["bon_after_updates"]) == (4, 10) and cfg["algo_name"] == "ogpo-plus-ca"
    # rerunning goes through `flowft resume` (here: a finished cell, so nothing to do) instead of starting over
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    again = _run(str(tmp_path / "out"), "toy", "ogpo-plus-ca", "cell", "0", str(bc), *small)
    assert again.returncode == 0 and (run / "DONE").exists()
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before
    log = (tmp_path / "out" / "cell.log").read_text()
    assert log.count("run dir:") == 1 and "is finished (160 env steps, budget 160" in log


def test_sim_cell_refuses_bad_arguments_in_one_line(tmp_path):
    short = _run(str(tmp_path), "toy")
    assert short.returncode == 2 and short.stderr.strip().splitlines() == [
        "usage: sim_cell.sh OUT TASK ALGO NAME SEED BC_CHECKPOINT [FLAGS...]"]
    missing = _run(str(tmp_path), "toy", "ogpo-plus-ca", "c", "0", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "BC_CHECKPOINT" in missing.stderr and len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "c").exists()


ARMS = ROOT / "benchmarks" / "sim_arms.sh"


def _arms(*args: str, dry: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ARMS), *args], capture_output=True, text=True, timeout=60,
                          env={**ENV, **({"DRY": "1"} if dry else {})})


def test_sim_arms_runs_a_named_arm_from_the_bench_bc_of_each_seed():
    out = _arms("B", "O", "door/ogpo-plus-fast-utd1", "1", "2")
    assert out.returncode == 0, out.stderr
    fast = ("--algo.actor-lr 3e-4 --algo.actor-lr-floor 1e-4 --algo.lr-warmup 200 --algo.lr-cycle 20000 "
            "--run.utd 1.0")
    assert out.stdout.splitlines() == [
        f"bash {ARMS.parent}/sim_cell.sh O/door/ogpo-plus-fast-utd1 door ogpo-plus s{s} {s} "
        f"B/sim-recipe/door/bc/s{s}/checkpoint {fast}" for s in (1, 2)]
    listing = _arms("--list").stdout.splitlines()
    assert "lift/preset-bon: ogpo-plus-ca --algo.best-of-n 8 --algo.bon-after-updates 2000" in listing
    assert "can/preset-distill: ogpo-plus-ca --algo.bon-distill-coeff 1.0" in listing
    assert "can/preset: ogpo-plus-ca" in listing  # its control
    assert len(listing) == 26
    # an arm with its own policy: its BC and its cell are built with the same policy flag (else the cell refuses it)
    pre, cell = _arms("B", "O", "can/preset-te-mlp", "0").stdout.splitlines()
    assert pre.endswith("--out-dir B/sim-recipe/can/bc-te-mlp --run-name s0 --policy.time-embed mlp")
    assert cell.endswith("B/sim-recipe/can/bc-te-mlp/s0/checkpoint --algo.policy.time-embed mlp")


def test_an_arm_with_its_own_policy_makes_its_bc_from_the_suite_demos_first(tmp_path):
    """door/ogpo-plus-fast-utd1-p256x3: a 3x256 velocity MLP needs its own BC, pretrained with the same width on the
    suite's demos of that seed (when missing), and the cell starts from it; without demos: one line, nothing made."""
    out = _arms("B", "O", "door/ogpo-plus-fast-utd1-p256x3", "2")
    assert out.returncode == 0, out.stderr
    pre, cell = out.stdout.splitlines()
    assert pre.endswith("flowft pretrain --task door --demos B/sim-recipe/door/demos/s2-*.hdf5 --seed 2 --threads 1 "
                        "--out-dir B/sim-recipe/door/bc-p256x3 --run-name s2 --policy.hidden 256 256 256")
    assert cell.split()[2:7] == ["O/door/ogpo-plus-fast-utd1-p256x3", "door", "ogpo-plus", "s2", "2"]
    assert cell.split()[7] == "B/sim-recipe/door/bc-p256x3/s2/checkpoint"
    assert cell.endswith("--run.utd 1.0 --algo.policy.hidden 256 256 256")
    # a BC already made: only the cell
    ckpt = tmp_path / "sim-recipe" / "door" / "bc-p256x3" / "s2" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")
    again = _arms(str(tmp_path), "O", "door/ogpo-plus-fast-utd1-p256x3", "2").stdout.splitlines()
    assert len(again) == 1 and again[0].split()[7] == f"{ckpt}"
    real = _arms(str(tmp_path / "none"), str(tmp_path / "out"), "door/ogpo-plus-fast-utd1-p256x3", "0", dry=False)
    assert real.returncode == 2 and len(real.stderr.splitlines()) == 1 and "no demos" in real.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "out").exists()


def test_an_arm_with_its_own_demo_count_generates_those_demos_then_its_bc():
    """can/preset-n40: the BC of each seed trains on 40 demos of that seed (generated when missing, into a file named
    by the count, so the suite's 20-demo file is never overwritten), then the Can preset runs from it."""
    out = _arms("B", "O", "can/preset-n40", "1")
    assert out.returncode == 0, out.stderr
    gen, pre, cell = out.stdout.splitlines()
    demos = "B/sim-recipe/can/demos/s1-n40-default.hdf5"
    assert gen.endswith(f"flowft demos --env can --episodes 40 --seed 1 --out {demos} --no-progress")
    assert pre.endswith(f"flowft pretrain --task can --demos {demos} --seed 1 --threads 1 "
                        "--out-dir B/sim-recipe/can/bc-n40 --run-name s1")
    assert cell.split()[2:] == ["O/can/preset-n40", "can", "ogpo-plus-ca", "s1", "1",
                                "B/sim-recipe/can/bc-n40/s1/checkpoint"]


def test_sim_arms_refuses_bad_arguments_in_one_line():
    for args, words in [(("B", "O", "can/nope", "0"), "unknown arm 'can/nope'"),
                        (("B", "O", "can/ogpo-plus-bon", "0", "x"), "SEED 'x'"), (("B", "O"), "usage:")]:
        out = _arms(*args)
        assert out.returncode == 2 and out.stdout == "" and len(out.stderr.splitlines()) == 1, args
        assert words in out.stderr
    # a missing BC stops at the first seed, in sim_cell.sh's one line, before anything is written
    real = _arms("/nonexistent", "/nonexistent/out", "can/ogpo-plus-bon", "0", "1", dry=False)
    assert real.returncode == 2 and len(real.stderr.splitlines()) == 1 and "BC_CHECKPOINT" in real.stderr

