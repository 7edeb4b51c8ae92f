"""Runs that survive stops, kills and concurrent use (issue 19: items 3, 4, 7, 8 and the CLI side of 9), on the toy
task with tiny budgets. Each test fails on the code before the fix: resume re-evaluated finished runs and appended
rows, metric windows restarted, metrics.csv was rewritten in place and a damaged one accepted, run dirs were not
locked and default names collided, SIGTERM/SIGINT lost the work since the last checkpoint, quickstart could not be
continued, CLI errors were tracebacks, and env workers started before the cheap checks.

Every comparison of metrics.csv leaves out the wall-clock time/* columns: they differ between any two runs."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flowft.cli import main
from flowft.config import load_train_config
from flowft.errors import CheckpointError, ConfigError
from flowft.train.loop import Trainer
from flowft.train.runguard import LOCK_NAME
from flowft.utils.checkpoint import latest_checkpoint
from flowft.utils.logging import Logger, LogConfig
from helpers import final_weights, make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"), steps=50)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()  # --run.threads 1 (the subprocess runs' setting) also applies in-process
    yield
    torch.set_num_threads(n)


def train_args(bc, out, name, steps=320, ckpt=160, log=48, evals=160):
    """`flowft train` argv of a tiny toy run (the same config in-process and in a subprocess)."""
    return ["train", "ogpo-plus-ca", "--task", "toy", "--run.bc-checkpoint", str(bc), "--run.env-steps", str(steps),
            "--run.start-training", "80", "--run.num-envs", "4", "--run.ckpt-every", str(ckpt),
            "--run.eval-every", str(evals), "--run.eval-episodes", "4", "--run.eval-envs", "4", "--run.no-plot",
            "--run.out-dir", str(out), "--run.run-name", name, "--algo.group-size", "4",
            "--run.log.log-every", str(log), "--run.threads", "1", "--run.buffer-capacity", "4000"]


def small_config(bc, out, name, **run):
    cfg = tiny_train_config(bc, out, run_name=name, start_training=80, eval_episodes=4, threads=1, **run)
    return replace(cfg, algo=replace(cfg.algo, group_size=4))


def with_log_every(cfg, n):
    return replace(cfg, run=replace(cfg.run, log=replace(cfg.run.log, log_every=n)))


def curve(run_dir: Path) -> list[list[str]]:
    """metrics.csv as header + rows, without the wall-clock time/* columns."""
    with (Path(run_dir) / "metrics.csv").open() as f:
        header, *rows = list(csv.reader(f))
    keep = [i for i, k in enumerate(header) if not k.startswith("time/")]
    return [[header[i] for i in keep]] + [[row[i] for i in keep] for row in rows]


def snapshot(d: Path, skip=(LOCK_NAME,)) -> dict:
    """Every file of a dir with its bytes and modification time (a rewrite with equal bytes still shows)."""
    return {str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(d).rglob("*"))
            if p.is_file() and p.name not in skip}


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = final_weights(a), final_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def one_line(err: str, verb: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"flowft {verb}: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ item 3: resume
def test_resuming_a_finished_run_changes_nothing(bc, tmp_path, capfd):
    assert main(train_args(bc, tmp_path, "r")) == 0
    run = tmp_path / "r"
    before, rows = snapshot(run), curve(run)
    capfd.readouterr()
    assert main(["resume", str(run)]) == 0
    out, err = capfd.readouterr()
    assert "is finished" in err and "--env-steps" in err
    assert snapshot(run) == before  # no evaluation row, no checkpoint rewrite, no provenance line
    final = dict(zip(rows[0], rows[-1]))
    table = dict(ln.split() for ln in out.splitlines()[1:] if len(ln.split()) == 2)  # the final results table
    assert float(table["eval/ode/success"]) == pytest.approx(float(final["eval/ode/success"]), abs=1e-4)
    cfg = load_train_config(json.loads((run / "config.json").read_text()))
    res = Trainer(cfg, run_dir=run, resume=True).run()  # the API says the same
    assert res["eval/bon/success"] == float(final["eval/bon/success"]) and snapshot(run) == before


@pytest.mark.filterwarnings("ignore:.*no manifest.json")  # the point of the test: a checkpoint of an earlier version
def test_older_checkpoint_at_the_budget_gets_one_final_evaluation_with_its_seed(bc, tmp_path):
    """A checkpoint of an earlier version written at the budget before its final evaluation: the resume evaluates
    once, with the seed the uninterrupted run used (the same numbers), and a second resume changes nothing."""
    args = train_args(bc, tmp_path, "full", ckpt=160, log=96, evals=100_000)  # final row: the evaluation alone
    assert main(args) == 0
    full, old = tmp_path / "full", tmp_path / "old"
    shutil.copytree(full, old)
    ckpt = latest_checkpoint(old)
    assert ckpt.name == "0000000320"
    state_file = ckpt / "training_state" / "state.json"
    state = json.loads(state_file.read_text())
    state["evals"] -= 1  # as saved before the final evaluation
    for key in ("metrics", "train_window"):  # unknown to earlier versions
        state.pop(key, None)
    state_file.write_text(json.dumps(state))
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "format_version": 1}))  # a checkpoint without manifest
    (ckpt / "manifest.json").unlink(missing_ok=True)
    lines = (old / "metrics.csv").read_text().splitlines(keepends=True)
    (old / "metrics.csv").write_text("".join(lines[:-1]))  # killed before the final evaluation's row
    assert main(["resume", str(old)]) == 0
    assert curve(old) == curve(full)
    before = snapshot(old)
    assert main(["resume", str(old)]) == 0
    assert snapshot(old) == before


def test_metric_windows_continue_exactly_across_a_resume(bc, tmp_path):
    # rows every 96 steps, checkpoint at 160: the window 96..192 spans the resume
    cfg = with_log_every(small_config(bc, tmp_path, "full", env_steps=320, ckpt_every=160), 96)
    Trainer(cfg).run()
    part = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")))
    part.run(stop_at=160)
    Trainer(replace(cfg, run=replace(cfg.run, run_name="part")), run_dir=part.run_dir, resume=True).run()
    assert curve(part.run_dir) == curve(tmp_path / "full")  # every column but time/*, the train/* means included
    assert same_weights(part.run_dir, tmp_path / "full")


def test_resume_extends_the_budget_and_refuses_one_below_the_steps_done(bc, tmp_path, capfd):
    assert main(train_args(bc, tmp_path, "r", steps=160)) == 0
    run = tmp_path / "r"
    before = snapshot(run)
    capfd.readouterr()
    assert main(["resume", str(run), "--env-steps", "80"]) == 2
    assert "--env-steps 80" in one_line(capfd.readouterr().err, "resume") and snapshot(run) == before
    assert main(["resume", str(run), "--env-steps", "240"]) == 0
    assert latest_checkpoint(run).name == "0000000240"
    assert json.loads((run / "config.json").read_text())["run"]["env_steps"] == 240
    steps = [row[0] for row in curve(run)[1:]]
    assert steps[-1] == "240" and len(steps) == len(set(steps))


def test_a_run_without_checkpoint_starts_over_from_its_config(bc, tmp_path, capfd):
    cfg = small_config(bc, tmp_path, "full", env_steps=160)
    Trainer(cfg).run()
    Trainer(replace(cfg, run=replace(cfg.run, run_name="killed"))).close()  # created, killed before any checkpoint
    assert not (tmp_path / "killed" / "checkpoints").exists()
    capfd.readouterr()
    assert main(["resume", str(tmp_path / "killed")]) == 0
    assert "no checkpoint yet: starting over" in capfd.readouterr().err
    killed, full = tmp_path / "killed", tmp_path / "full"
    assert same_weights(killed, full) and curve(killed) == curve(full)


# ---------------------------------------------------------------------------------------- item 4: metrics.csv
@pytest.fixture(scope="module")
def stopped_run(bc, tmp_path_factory):
    """A run stopped right after its checkpoint at 160 (of 320); rows at 0 (evaluation), 48, 96 and 144."""
    root = tmp_path_factory.mktemp("stopped")
    t = Trainer(small_config(bc, root, "stopped", env_steps=320, ckpt_every=160,
                             log=LogConfig(log_every=48, progress=False)))
    t.run(stop_at=160)
    return t.run_dir


def _damage(path: Path, how: str) -> None:
    text = path.read_text()
    if how == "empty":
        path.write_text("")
    elif how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_text(text[: len(text) - len(text.splitlines(keepends=True)[-1]) // 2 - 1])
    elif how == "header":
        path.write_text("step,success\n" + text.split("\n", 1)[1])


@pytest.mark.parametrize("how", ["empty", "truncated", "header", "missing"])
def test_a_damaged_metrics_history_is_refused_with_the_fix(stopped_run, tmp_path, capfd, how):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    _damage(run / "metrics.csv", how)
    before = snapshot(run)
    capfd.readouterr()
    assert main(["resume", str(run)]) == 2
    line = one_line(capfd.readouterr().err, "resume")
    assert str(run / "metrics.csv") in line and "--repair-metrics" in line
    assert snapshot(run) == before  # refused before anything was written


def test_repair_metrics_continues_and_keeps_the_damaged_file(stopped_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    _damage(run / "metrics.csv", "truncated")
    damaged = (run / "metrics.csv").read_bytes()
    assert main(["resume", str(run), "--repair-metrics"]) == 0
    kept = list(run.glob("metrics.csv.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    steps = [row[0] for row in curve(run)[1:]]
    assert steps[:3] == ["0", "48", "96"] and steps[-1] == "320" and "144" not in steps  # the lost row stays lost


def test_metrics_csv_is_replaced_atomically(tmp_path, monkeypatch):
    log = Logger(tmp_path, LogConfig(), {})
    log.log({"train/a": 1.0}, 100, 1)
    before = (tmp_path / "metrics.csv").read_bytes()

    def crash(*a):
        raise OSError("killed during the rewrite")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        log.log({"train/a": 2.0, "eval/success": 0.5}, 200, 2)  # a new column: the file is rewritten
    assert (tmp_path / "metrics.csv").read_bytes() == before


# ------------------------------------------------------------------------------------------- item 7: locks
def test_a_run_in_use_is_refused_and_left_untouched(bc, stopped_run, tmp_path, capfd):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    hold = ("import sys, time; from pathlib import Path; from flowft.train.runguard import RunLock; "
            "held = RunLock.acquire(Path(sys.argv[1]), 'x'); print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run, skip=())
        capfd.readouterr()
        assert main(["resume", str(run)]) == 2
        line = one_line(capfd.readouterr().err, "resume")
        assert f"in use by pid {holder.pid} on host" in line and str(run) in line
        assert main(train_args(bc, tmp_path, "run")) == 2  # a new run of that name: refused, naming the holder
        line = one_line(capfd.readouterr().err, "train")
        assert f"in use by pid {holder.pid}" in line and f"flowft resume {run}" in line
        assert snapshot(run, skip=()) == before
    finally:
        holder.kill()
        holder.wait()


def test_default_run_names_never_collide(bc, tmp_path, monkeypatch):
    import datetime as dt

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr("flowft.train.runguard.datetime", Frozen)  # both runs start in the same second
    cfg = small_config(bc, tmp_path, None)
    a, b = Trainer(cfg), Trainer(cfg)
    try:
        assert a.run_dir != b.run_dir and a.run_dir.parent == b.run_dir.parent
        assert a.run_dir.name == "ogpo-plus-ca-toy-s0-20260102-030405" and b.run_dir.name == a.run_dir.name + "-2"
        assert (a.run_dir / "config.json").exists() and (b.run_dir / "config.json").exists()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------------------- item 8: stopping
def _rows(run: Path) -> int:
    try:
        return max(0, len((run / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _stop_after_rows(cmd: list[str], run: Path, rows: int, sig: int, group: bool = False) -> tuple[int, str]:
    """Start `python -m flowft CMD`, send `sig` once metrics.csv has `rows` rows (to its whole process group, as a
    terminal or a job scheduler does, when `group`); returns (exit code, stderr)."""
    log = run.with_name(run.name + f".{sig}.log")
    with log.open("w") as err:  # a file, not a pipe nobody reads while polling
        proc = subprocess.Popen([sys.executable, "-m", "flowft", *cmd], stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=group)
        deadline = time.time() + 240
        while _rows(run) < rows and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=240)
    return proc.returncode, log.read_text()


def test_sigterm_and_sigint_checkpoint_say_how_to_resume_and_resume_exactly(bc, tmp_path):
    args = lambda name: train_args(bc, tmp_path, name, steps=480, ckpt=100_000, log=24, evals=240)  # noqa: E731
    assert main(args("full")) == 0
    run = tmp_path / "stopped"
    rc, err = _stop_after_rows(args("stopped"), run, 3, signal.SIGTERM)
    assert rc == 143 and "Traceback" not in err and f"Continue with: flowft resume {run}" in err, err[-2000:]
    first = int(latest_checkpoint(run).name)
    assert 0 < first < 480  # written at the stop: no periodic checkpoint is due before 100k steps
    rc, err = _stop_after_rows(["resume", str(run)], run, _rows(run) + 3, signal.SIGINT)
    assert rc == 130 and "Traceback" not in err and f"Continue with: flowft resume {run}" in err, err[-2000:]
    assert first < int(latest_checkpoint(run).name) < 480
    assert main(["resume", str(run)]) == 0
    assert same_weights(run, tmp_path / "full") and curve(run) == curve(tmp_path / "full")


def test_sigterm_to_the_process_group_still_checkpoints_with_async_env_workers(bc, tmp_path):
    """A scheduler's SIGTERM reaches every process of the group: the env workers must outlive the main process's
    stop at its safe point (they used to die first, and the step before the checkpoint failed)."""
    run = tmp_path / "group"
    argv = train_args(bc, tmp_path, "group", steps=480, ckpt=100_000, log=24, evals=240)
    argv += ["--run.vectorization", "async", "--run.num-envs", "2", "--run.eval-envs", "2"]  # 4 worker processes
    rc, err = _stop_after_rows(argv, run, 3, signal.SIGTERM, group=True)
    assert rc == 143 and "Traceback" not in err and f"Continue with: flowft resume {run}" in err, err[-2000:]
    assert 0 < int(latest_checkpoint(run).name) < 480


def test_quickstart_continues_where_it_stopped(tmp_path, monkeypatch, capfd):
    argv = ["quickstart", "--task", "toy", "--env-steps", "160", "--out-dir", str(tmp_path)]
    real_step = Trainer._step_and_train

    def ctrl_c_once(self):
        if self.env_steps == 80 and not getattr(ctrl_c_once, "done", False):
            ctrl_c_once.done = True
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the training stage
        return real_step(self)

    monkeypatch.setattr(Trainer, "_step_and_train", ctrl_c_once)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 130 and "rerun the same `flowft quickstart`" in capfd.readouterr().err
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "reusing the demonstrations" in err and "reusing the BC checkpoint" in err and "resumed" in err
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(names) == 3 and names[0].startswith("bc-toy") and names[2].startswith("ogpo-plus-ca-toy")
    run = tmp_path / names[2]
    before = snapshot(run)
    assert main(argv) == 0 and "is finished" in capfd.readouterr().err and snapshot(run) == before


# -------------------------------------------------------------------------------- item 9, CLI side: errors
def test_cli_errors_are_one_line_naming_the_file_with_a_debug_traceback(tmp_path, capfd, monkeypatch):
    missing = tmp_path / "nope"
    assert main(["resume", str(missing)]) == 2
    assert str(missing) in one_line(capfd.readouterr().err, "resume")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    assert main(["resume", str(bad)]) == 2
    assert str(bad / "config.json") in one_line(capfd.readouterr().err, "resume")
    assert main(["pretrain", "--task", "toy"]) == 2  # a deliberate SystemExit path: the same form
    assert "--demos" in one_line(capfd.readouterr().err, "pretrain")
    with pytest.raises(CheckpointError):
        main(["resume", str(missing), "--debug"])
    monkeypatch.setenv("FLOWFT_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(["resume", str(missing)])


def test_cheap_checks_come_before_any_env_worker(bc, stopped_run, tmp_path, monkeypatch):
    import importlib.util

    from flowft import registry
    from flowft.presets import train_preset

    shutil.copytree(stopped_run, tmp_path / "a")
    cfg = load_train_config(json.loads((tmp_path / "a" / "config.json").read_text()))

    def no_envs(*a, **k):
        raise AssertionError("env workers started before the cheap checks")

    monkeypatch.setattr("flowft.train.loop.make_vec_env", no_envs)
    other = replace(cfg, algo=replace(cfg.algo, group_size=8))  # checkpoint compatibility
    with pytest.raises(ValueError, match="group_size"):
        Trainer(other, run_dir=tmp_path / "a", resume=True)
    toy8 = replace(registry.get_task("toy"), name="toy-h8", chunk_len=8)  # BC dims: chunk size 4 vs 8
    monkeypatch.setitem(registry.TASKS, "toy-h8", toy8)
    with pytest.raises(ValueError, match="chunk"):
        Trainer(replace(cfg, run=replace(cfg.run, task="toy-h8", run_name="b")))
    real = importlib.util.find_spec  # the simulator extra
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "robosuite" else real(name, *a))
    with pytest.raises(ConfigError, match=r"flowft\[robomimic\]"):
        Trainer(train_preset("ogpo-plus-ca", "lift", "tiny", bc_checkpoint=str(bc), out_dir=str(tmp_path)))
    assert not (tmp_path / "b").exists()
