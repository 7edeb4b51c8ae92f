"""Benchmark harness: suites, the resumable grid runner (end to end on toy-smoke), and the report's statistics."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flowft.bench import locks, report, runner, stats
from flowft.bench.suites import SUITES, BCStage, Suite, get_suite
from flowft.bench.verify import verify_report
from flowft.cli import main
from flowft.registry import algorithm_names
from flowft.utils.rundirs import move_aside
from helpers import fake_run


# ----------------------------------------------------------------------------------------------- suites
def test_unknown_suite_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(ValueError, match="unknown suite 'nope'") as e:
        get_suite("nope")
    for name in ("toy-smoke", "cpu-small", "cpu-lift", "cpu-full", "paper"):
        assert name in str(e.value)
    assert main(["bench", "nope", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'nope'" in err and "cpu-small" in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_suites_plan_and_filters(tmp_path, capsys):
    assert {"toy-smoke", "cpu-small", "cpu-lift", "cpu-full", "paper"} <= set(SUITES)
    small = runner.plan(SUITES["cpu-small"], tmp_path)
    cells = [j for j in small if j.kind == "train"]
    n_methods = len(algorithm_names()) + len(SUITES["cpu-small"].variants)  # + the claim-ablation variants
    assert len(cells) == 3 * n_methods and sum(j.kind == "bc" for j in small) == 3
    assert {j.spec["overrides"]["eval_episodes"] for j in cells} == {64}
    assert all(j.state == "new" and j.deps == [f"toy/bc/s{j.spec['seed']}"] for j in cells)
    full = runner.plan(SUITES["cpu-full"], tmp_path, only_tasks=("door",), seeds=(5,), only_algos=("ogpo",))
    assert [j.key for j in full] == ["door/bc/s5", "door/ogpo/s5"]
    assert runner.cell_config(full[1].spec).run.eval_samplers == ("ode",)  # headline_only
    with pytest.raises(ValueError, match="not in suite"):
        runner.plan(SUITES["cpu-full"], tmp_path, only_tasks=("square",))
    odd = Suite("odd", "", tasks=("toy",), seeds=(0,), algorithms=("ogpo", "not-registered-yet"))
    assert [j.key for j in runner.plan(odd, tmp_path)] == ["toy/bc/s0", "toy/ogpo/s0"]
    assert "not registered, skipped: ['not-registered-yet']" in capsys.readouterr().err
    paper = runner.cell_config(runner.plan(SUITES["paper"], tmp_path, only_tasks=("door",))[-1].spec)
    assert paper.run.env_steps == 500_000 and paper.algo.policy.hidden == (512, 512, 512, 512)


def test_cell_states(tmp_path):
    d = tmp_path / "cell"
    assert runner.cell_state(d, 640) == "new"
    d.mkdir()
    (d / "metrics.csv").write_text("env_steps\n0\n")
    assert runner.cell_state(d, 640) == "restart"
    moved = move_aside(d)
    assert not d.exists() and (moved / "metrics.csv").exists() and ".aborted-" in moved.name
    d.mkdir()
    runner.write_done(d, 640)
    assert runner.cell_state(d, 640) == "done" and runner.cell_state(d, 1280) == "restart"  # budget raised


# ------------------------------------------------------------------------------------ end to end (toy)
def _no_launch(job):
    raise AssertionError(f"{job.key} was launched although it is finished")


def test_toy_smoke_end_to_end_skip_and_resume(tmp_path, monkeypatch):
    from flowft.train.loop import Trainer
    from flowft.utils.checkpoint import latest_checkpoint

    jobs = runner.run_suite("toy-smoke", tmp_path, workers=2, poll_s=0.2)
    root = tmp_path / "toy-smoke"
    assert [j.outcome for j in jobs] == ["ok"] * 6, [(j.key, j.outcome, j.log.read_text()[-2000:]) for j in jobs]
    for algo in ("ogpo", "ogpo-plus-ca"):
        for seed in (0, 1):
            d = root / "toy" / algo / f"s{seed}"
            assert json.loads((d / "DONE").read_text())["env_steps"] == 640
            assert latest_checkpoint(d).name == "0000000640"
            cfg = json.loads((d / "config.json").read_text())
            assert cfg["run"]["bc_checkpoint"] == str(root / "toy" / "bc" / f"s{seed}" / "checkpoint")  # shared
            assert cfg["run"]["threads"] == 1 and cfg["run"]["env_steps"] == 640
    suite_json = json.loads((root / "suite.json").read_text())
    assert set(suite_json["cells"]) == {"toy/ogpo", "toy/ogpo-plus-ca"}
    # which code made every cell and the BC it started from
    from flowft.utils.provenance import source_digest, sources
    for d in [root / "toy" / a / f"s{s}" for a in ("ogpo", "ogpo-plus-ca", "bc") for s in (0, 1)]:
        assert sources(d) == [source_digest()], d
    assert json.loads((root / "sittings.jsonl").read_text().splitlines()[0])["source"] == source_digest()

    # second sitting: everything finished, nothing is launched
    monkeypatch.setattr(runner, "_launch", _no_launch)
    assert [j.outcome for j in runner.run_suite("toy-smoke", tmp_path, workers=2)] == ["skipped"] * 6
    monkeypatch.undo()

    # third sitting: toy/ogpo/s1 was interrupted after its 320-step checkpoint; toy/ogpo-plus-ca/s1 left a run dir
    # without any checkpoint. The first is resumed to the budget, the second moved aside and restarted.
    cell, broken = root / "toy" / "ogpo" / "s1", root / "toy" / "ogpo-plus-ca" / "s1"
    cell.rename(tmp_path / "finished-ogpo-s1")
    spec = next(j.spec for j in runner.plan(get_suite("toy-smoke"), tmp_path) if j.key == "toy/ogpo/s1")
    Trainer(runner.cell_config(spec), run_dir=cell).run(stop_at=320)
    assert latest_checkpoint(cell).name == "0000000320" and not (cell / "DONE").exists()
    shutil.rmtree(broken)
    broken.mkdir()
    (broken / "metrics.csv").write_text("env_steps,grad_steps\n")
    states = {j.key: j.state for j in runner.run_suite("toy-smoke", tmp_path, dry_run=True, seeds=(1,))}
    assert states == {"toy/bc/s1": "done", "toy/ogpo/s1": "resume", "toy/ogpo-plus-ca/s1": "restart"}
    jobs = runner.run_suite("toy-smoke", tmp_path, workers=2, seeds=(1,), poll_s=0.2)
    assert {j.key: j.outcome for j in jobs} == {"toy/bc/s1": "skipped", "toy/ogpo/s1": "ok",
                                                "toy/ogpo-plus-ca/s1": "ok"}
    done = json.loads((cell / "DONE").read_text())
    assert done["env_steps"] == 640 and done["started_as"] == "resume"
    assert latest_checkpoint(cell).name == "0000000640"
    assert "resumed" in (cell.parent / "s1.log").read_text()
    steps = [r["env_steps"] for r in csv.DictReader((cell / "metrics.csv").open())]
    assert len(steps) == len(set(steps)) and steps[-1] == "640"
    assert json.loads((broken / "DONE").read_text())["started_as"] == "restart"
    assert "aside" in (broken.parent / "s1.log").read_text()
    assert len(list(broken.parent.glob("s1.aborted-*"))) == 1
    status = list(csv.DictReader((root / "status.csv").open()))
    assert {r["job"]: r["state_before"] for r in status}["toy/ogpo/s1"] == "resume"


def test_failed_bc_blocks_its_cells_and_is_recorded(tmp_path):
    bad = replace(get_suite("toy-smoke"), name="bad", seeds=(0,), bc=BCStage(demo_episodes=0))
    jobs = runner.run_suite(bad, tmp_path, workers=2, poll_s=0.2)
    assert {j.key: j.outcome for j in jobs} == {"toy/bc/s0": "failed", "toy/ogpo/s0": "blocked",
                                                "toy/ogpo-plus-ca/s0": "blocked"}
    marker = json.loads((tmp_path / "bad" / "toy" / "bc" / "s0.FAILED").read_text())
    assert marker["rc"] != 0 and any("holds no demos" in line for line in marker["tail"])
    blocked = json.loads((tmp_path / "bad" / "toy" / "ogpo" / "s0.FAILED").read_text())
    assert blocked["outcome"] == "blocked" and "toy/bc/s0" in blocked["reason"]


# ---------------------------------------------------------------------------------------------- report
@pytest.fixture
def fake_runs(tmp_path):
    steps = [0, 1000, 2000, 3000]
    ogpo = {0: [0.4, 0.6, 0.85, 0.9], 1: [0.4, 0.5, 0.7, 0.95], 2: [0.4, 0.3, 0.8, 0.8]}
    for seed, ys in ogpo.items():
        fake_run(tmp_path, "ogpo", seed, steps, {"eval/ode/success": ys, "eval/bon/success": [0.0] * 4,
                                                 "time/sps": [None, 100 + seed, 110 + seed, 120 + 10 * seed],
                                                 "time/update_frac": [None, 0.5, 0.5, 0.3 + 0.1 * seed]})
    # qc's headline sampler is bon: its ode column must not be used
    fake_run(tmp_path, "qc", 0, steps, {"eval/ode/success": [1.0] * 4, "eval/bon/success": [0.3, 0.2, 0.55, 0.6]})
    fake_run(tmp_path, "dppo", 0, steps[:3], {"eval/ode/success": [0.4, 0.3, 0.2]})
    # a start already >= 0.5 does not count as reaching 0.5, nor does a single reading >= 0.5 that the next eval
    # does not repeat (0.55 then 0.45: noise); the last eval counts alone (0.85 -> 0.8 reached at 4000)
    fake_run(tmp_path, "residual", 0, steps + [4000], {"eval/ode/success": [0.6, 0.4, 0.55, 0.45, 0.85]})
    aborted = fake_run(tmp_path, "dppo", 7, steps, {"eval/ode/success": [0.9] * 4})  # moved aside: ignored
    aborted.rename(aborted.with_name("s7.aborted-20260101-000000"))
    bc = tmp_path / "toy" / "bc" / "s0"  # a BC run dir: ignored
    bc.mkdir(parents=True)
    (bc / "config.json").write_text(json.dumps({"kind": "bc", "task": "toy"}))
    (bc / "metrics.csv").write_text("env_steps,grad_steps,eval/success\n0,100,0.5\n")
    return tmp_path


def test_report_known_values(fake_runs, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(fake_runs / "toy"), "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(rows) == {"ogpo", "qc", "dppo", "residual"}
    res = rows["residual"]
    assert float(res["steps_to_0.5_mean"]) == 4000 and res["steps_to_0.5_reached"] == "1"
    assert float(res["steps_to_0.8_mean"]) == 4000 and res["steps_to_0.9_reached"] == "0"
    o = rows["ogpo"]
    assert o["n_seeds"] == "3" and float(o["start_mean"]) == pytest.approx(0.4)
    assert float(o["steps_to_0.5_mean"]) == pytest.approx(4000 / 3) and o["steps_to_0.5_reached"] == "3"
    assert float(o["steps_to_0.8_mean"]) == pytest.approx(7000 / 3) and o["steps_to_0.8_reached"] == "3"
    assert float(o["steps_to_0.9_mean"]) == pytest.approx(3000) and o["steps_to_0.9_reached"] == "2"
    # final: values 0.9, 0.95, 0.8 -> mean 0.88333, s = 0.0763763, half = 4.3027 * s / sqrt(3) = 0.189727
    assert float(o["final_mean"]) == pytest.approx(0.883333, abs=1e-5)
    assert float(o["final_ci95"]) == pytest.approx(0.189727, abs=1e-4)
    assert o["run_dirs"].split(";") == [str((fake_runs / "toy" / "ogpo" / f"s{s}").resolve()) for s in range(3)]
    q = rows["qc"]
    assert q["metric"] == "eval/bon/success" and float(q["steps_to_0.5_mean"]) == 2000
    assert q["final_ci95"] == "nan" and float(q["final_mean"]) == pytest.approx(0.6)
    assert rows["dppo"]["steps_to_0.5_reached"] == "0" and float(rows["dppo"]["final_step"]) == 2000
    md = (out / "report.md").read_text()
    assert "| ogpo | 3 | 0.40 | 1,333 (3/3) | 2,333 (3/3) | 3,000 (2/3) | 0.88 ± 0.19 | 3,000 |" in md
    assert "| qc | 1 | 0.30 | 2,000 (1/1) | — | — | 0.60 | 3,000 |" in md
    assert "| dppo | 1 | 0.40 | — | — | — | 0.20 | 2,000 |" in md
    # throughput: last logged sps/update_frac per run, mean over runs
    thr = {r["method"]: r for r in csv.DictReader((out / "throughput.csv").open())}
    assert float(thr["ogpo"]["sps_mean"]) == pytest.approx((120 + 130 + 140) / 3)
    assert float(thr["ogpo"]["update_frac_mean"]) == pytest.approx(0.4)
    assert "| toy | ogpo | 3 | 130 | 0.40 |" in md
    curves = [r for r in csv.DictReader((out / "curves.csv").open()) if r["method"] == "ogpo"]
    assert [float(r["mean"]) for r in curves] == pytest.approx([0.4, 0.466667, 0.783333, 0.883333], abs=1e-5)
    assert float(curves[0]["ci95_high"]) == pytest.approx(0.4)  # zero spread at step 0
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 6  # the BC dir is not a run
    assert (out / "curves.png").stat().st_size > 0


def test_curve_truncates_to_common_steps_and_colours_are_fixed(fake_runs, tmp_path):
    runs = [report.load_run(p) for p in report.find_run_dirs([fake_runs])]
    short = next(r for r in runs if r.algo == "dppo")
    c = report.curve([short, next(r for r in runs if r.algo == "ogpo")])
    assert c.steps.tolist() == [0, 1000, 2000] and c.n == 2
    both = report.plot_curves(report.group_runs(runs), tmp_path / "a.png")
    only = report.plot_curves(report.group_runs([r for r in runs if r.algo == "ogpo"]), tmp_path / "b.png")
    assert both["ogpo"] == only["ogpo"] == report.METHOD_COLORS["ogpo"]
    assert len(set(both.values())) == 4
    names = algorithm_names()
    assert len({report.method_color(n) for n in names}) == len(names)  # registered methods never share a colour
    # unknown names: crc32 of the name (known answer), so the colour never depends on Python's salted hash()
    assert report.method_color("my-ablation") == "#7b4173" and report.method_color("zz") == "#ad494a"


def test_t_quantiles_and_mean_ci():
    assert stats.t975(1) == 12.7062 and stats.t975(2) == 4.3027
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 29, 30, 31, 45, 200):
        assert stats.t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-4)
    m, h = stats.mean_ci([1.0, 3.0])
    assert m == 2.0 and h == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2))
    assert math.isnan(stats.mean_ci([0.5])[1])


def test_report_rejects_empty_input(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no run directories" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no such directory"):
        report.write_report([tmp_path / "missing"], tmp_path / "o")
    assert np.isnan(stats.mean_ci([])[0])


def test_variant_overrides_reach_the_cell_config(tmp_path):
    from flowft.bench.runner import cell_config, replace_path, train_spec
    from flowft.bench.suites import get_suite

    suite = get_suite("cpu-small")
    spec = train_spec(suite, tmp_path, "toy", "ogpo-plus-ca-no-sde-correction", 1, 1)
    cfg = cell_config(spec)
    assert cfg.algo_name == "ogpo-plus-ca" and cfg.algo.policy.sde.correction == "none"
    assert spec["run_dir"].endswith("toy/ogpo-plus-ca-no-sde-correction/s1")
    base = cell_config(train_spec(suite, tmp_path, "toy", "ogpo-plus-ca", 1, 1))
    assert base.algo.policy.sde.correction == "consistent" and base.algo.target_agg == "mean"
    assert cell_config(train_spec(suite, tmp_path, "toy", "ogpo-plus-ca-min-target", 1, 1)).algo.target_agg == "min"
    with pytest.raises(ValueError, match="no field 'sdee'"):
        replace_path(base.algo, [("policy.sdee.correction", "none")])


def test_report_method_filter_and_ratio_metric(tmp_path):
    from flowft.bench import report

    steps = [0, 1000, 2000]
    for seed in (0, 1):
        fake_run(tmp_path / "runs", "ogpo", seed, steps, {"eval/ode/success": [0.4, 0.6, 0.9],
                                                          "train/a": [None, 2.0 + seed, 4.0], "train/b": [None, 1.0, 2.0]})
    fake_run(tmp_path / "runs", "dppo", 0, steps, {"eval/ode/success": [0.4, 0.4, 0.5]})
    out = tmp_path / "out"
    md = report.write_report([tmp_path / "runs"], out, methods=("ogpo",), metrics=("train/a:train/b",))
    summary = (out / "summary.csv").read_text()
    assert "ogpo" in summary and "dppo" not in summary
    assert (out / "train_a_over_train_b.png").exists() and "train_a_over_train_b.png" in md.read_text()
    groups = report.group_runs([report.load_run(p) for p in report.find_run_dirs([tmp_path / "runs"])])
    steps_, means = report.metric_means(groups, "train/a:train/b")[("toy", "ogpo")]
    assert steps_ == [1000.0, 2000.0] and np.allclose(means, [(2 / 1 + 3 / 1) / 2, 2.0])
    assert ("toy", "dppo") not in report.metric_means(groups, "train/a:train/b")  # never logged
    with pytest.raises(ValueError, match=r"--methods \['qc'\]"):
        report.write_report([tmp_path / "runs"], out, methods=("qc",))


def test_report_records_inputs_and_verify_detects_edits(fake_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(fake_runs)  # run dirs under the working directory are written relative to it
    out = tmp_path / "rep"
    assert main(["report", "toy", "--out", str(out), "--methods", "ogpo", "qc", "--metrics", "time/sps"]) == 0
    inputs = json.loads((out / "report.json").read_text())
    assert inputs == {"dirs": ["toy"], "sampler": "headline", "label": "algo", "thresholds": [0.5, 0.8, 0.9],
                      "title": "", "methods": ["ogpo", "qc"], "metrics": ["time/sps"]}
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["run_dir"] for r in rows] == ["toy/ogpo/s0", "toy/ogpo/s1", "toy/ogpo/s2", "toy/qc/s0"]
    assert "![time/sps](time_sps.png)" in (out / "report.md").read_text()  # caption = the metric name
    assert main(["report", str(out), "--verify"]) == 0
    assert "reproduced" in capsys.readouterr().out
    # a hand-edited number and an edited run's metrics.csv are both caught
    summary = (out / "summary.csv").read_text()
    (out / "summary.csv").write_text(summary.replace("0.8833333333", "0.9833333333"))
    assert main(["report", str(out), "--verify"]) == 1
    assert "summary.csv: differs" in capsys.readouterr().out
    (out / "summary.csv").write_text(summary)
    m = fake_runs / "toy" / "qc" / "s0" / "metrics.csv"
    m.write_text(m.read_text().replace("0.6", "0.7"))
    assert verify_report(out) and main(["report", str(out), "--verify"]) == 1
    # a directory that no report wrote is a clear error, not a pass
    assert main(["report", str(tmp_path), "--verify"]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_stop_cells_kills_a_cell_that_ignores_sigterm_and_its_workers(tmp_path):
    """An interrupted grid must not hang on a cell that does not unwind: SIGTERM, grace, then SIGKILL of its group."""
    pidfile = tmp_path / "grandchild.pid"
    stubborn = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    polite = "import time; time.sleep(60)"  # default SIGTERM action: dies at once
    procs = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for code in (stubborn, polite)]
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    grandchild = int(pidfile.read_text())
    t0 = time.monotonic()
    assert runner.stop_cells(procs, grace_s=1.0) == [-9, -15]
    assert time.monotonic() - t0 < 10

    def alive(pid: int) -> bool:  # a zombie (killed, not yet reaped by whatever PID 1 is) counts as dead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")

    for _ in range(50):  # the env-worker stand-in was in the killed group
        if not alive(grandchild):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the cell's worker process survived stop_cells")


def test_a_cell_run_by_another_sitting_is_left_alone(tmp_path, monkeypatch):
    """Two sittings of one suite: the second must neither launch the first's cells nor move their live dirs aside."""
    from flowft.bench import worker

    jobs = runner.plan(get_suite("toy-smoke"), tmp_path, seeds=(0,))
    assert not list(tmp_path.iterdir())  # planning creates no lock files or directories
    bc, cell = jobs[0], next(j for j in jobs if j.kind == "train")
    cell.path.mkdir(parents=True)
    (cell.path / "metrics.csv").write_text("env_steps\n0\n")  # live, no checkpoint yet: would be a "restart"
    held = [locks.try_lock(bc.path), locks.try_lock(cell.path)]  # the "first sitting"
    assert all(held) and locks.try_lock(cell.path) is None
    again = {j.key: j for j in runner.plan(get_suite("toy-smoke"), tmp_path, seeds=(0,))}
    assert again[bc.key].state == "busy" and again[cell.key].state == "busy"
    monkeypatch.setattr(runner, "_launch", _no_launch)
    out = {j.key: j.outcome for j in runner.execute(list(again.values()), workers=2, poll_s=0.01)}
    assert out[bc.key] == out[cell.key] == "busy" and set(out.values()) == {"busy", "waiting"}
    assert not list(tmp_path.rglob("*.FAILED"))
    assert worker.worker_main([json.dumps(cell.spec)]) == runner.BUSY_RC  # a race past plan(): refused too
    assert (cell.path / "metrics.csv").exists() and not list(cell.path.parent.glob("*.aborted-*"))
    for f in held:
        f.close()
    assert not locks.is_busy(cell.path)


# ------------------------------------------------------------------------------- honest starts: fewer demos
def _bc_spec(tmp_path, clip_max, ladder):
    from flowft.bench.runner import _demo_name

    bc = BCStage(demo_episodes=12, fewer_demos=ladder)
    return {"kind": "bc", "task": "toy", "seed": 0, "size": "tiny", "threads": 1, "bc_dir": str(tmp_path / "bc" / "s0"),
            "demos": str(tmp_path / "demos" / _demo_name(0, bc)), "demo_episodes": 12, "demo_noise": 0.1,
            "demo_style": "clean", "fewer_demos": list(ladder),
            "overrides": {"steps": 120, "eval_every": 40, "eval_episodes": 8, "eval_envs": 4, "gate": "confirmed",
                          "min_steps": 40, "plateau_window": 10, "plateau_tol": 10.0, "confirm_episodes": 8,
                          "clip_threshold": 0.0, "clip_max": clip_max}}


def test_bc_over_its_ceiling_is_trained_again_on_fewer_demos(tmp_path):
    """clip_max 0 is never met (toy BC succeeds): the full demo set, then 6 and 3 successful demos are tried, each in
    its own dir with its own max_episodes, and the last is kept; clip_max 1 is met at once: one attempt."""
    from flowft.bench.worker import _worker_bc
    from safetensors.torch import load_file

    spec = _bc_spec(tmp_path, 0.0, (6, 3))
    (tmp_path / "demos").mkdir()
    _worker_bc(spec)
    attempts = json.loads((tmp_path / "bc" / "s0" / "attempts.json").read_text())
    assert [a["dir"] for a in attempts] == ["s0.n12-all", "s0.n6", "s0.n3"]
    assert all(a["over_ceiling"] and a["confirmed"] > 0 for a in attempts)
    used = [json.loads((tmp_path / "bc" / d / "config.json").read_text())["bc"]["max_episodes"]
            for d in ("s0.n12-all", "s0.n6", "s0.n3")]
    assert used == [None, 6, 3]
    kept, last = (load_file(str(tmp_path / "bc" / d / "checkpoint" / "model.safetensors")) for d in ("s0", "s0.n3"))
    assert all(torch_equal(kept[k], last[k]) for k in last)
    assert runner.bc_state(tmp_path / "bc" / "s0") == "done"
    # a ceiling that the first attempt meets: no second attempt
    spec = _bc_spec(tmp_path / "ok", 1.0, (6, 3))
    (tmp_path / "ok" / "demos").mkdir(parents=True)
    _worker_bc(spec)
    assert [a["dir"] for a in json.loads((tmp_path / "ok" / "bc" / "s0" / "attempts.json").read_text())] == [
        "s0.n12-all"]
    with pytest.raises(ValueError, match="fewer_demos"):
        BCStage(fewer_demos=(3, 6))


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a, b))
