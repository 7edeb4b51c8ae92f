"""Acceptance audit of issue 19 (runs that survive anything): the gaps a careful user still found on the toy task.
Every other item of the issue is covered by test_run_faults.py, test_checkpoint_integrity.py,
test_config_validation.py, test_errors.py and test_data_errors.py."""

import warnings
from pathlib import Path

import pytest

from flowft.errors import CheckpointError
from flowft.presets import train_preset
from flowft.train.resuming import check_history
from flowft.train.loop import Trainer
from flowft.utils.manifest import CheckpointWarning
from helpers import make_bc_checkpoint


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"), steps=50)  # pretrained on task `toy`


def bc_task_warnings(bc, out, task: str) -> list[str]:
    cfg = train_preset("ogpo-plus-ca", task, "tiny", bc_checkpoint=str(bc), out_dir=str(out), num_envs=4,
                       eval_envs=4, plot=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(cfg)
    trainer.close()
    return [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning) and "task" in str(w.message)]


def test_a_bc_checkpoint_of_another_task_with_the_same_dims_is_not_accepted_silently(bc, tmp_path):
    # issue 19, failure 9: toy and toy-fixed have the same dims, so only the recorded task name can tell them apart
    said = bc_task_warnings(bc, tmp_path / "other", "toy-fixed")
    assert len(said) == 1 and "'toy'" in said[0] and "'toy-fixed'" in said[0] and str(bc) in said[0]
    assert bc_task_warnings(bc, tmp_path / "same", "toy") == []  # its own task: not a word


@pytest.mark.parametrize("args, says", [
    (["--episodes", "0"], "--episodes must be an integer >= 1"),
    (["--episodes", "-5"], "--episodes must be an integer >= 1"),
    (["--seed", "-1"], "--seed must be an integer >= 0"),
    (["--action-noise", "-1"], "--action-noise must be a number >= 0")])
def test_demos_arguments_are_checked_before_anything_is_written(tmp_path, capfd, args, says):
    # issue 19, "every numeric field of every config": `flowft demos --episodes 0` exited 0 and wrote a demo file
    # with no episode; --action-noise -1 was accepted
    from flowft.cli import main

    out = tmp_path / "demos.hdf5"
    try:
        rc = main(["demos", "--out", str(out), "--env", "toy", "--episodes", "2", "--no-progress", *args])
    except SystemExit as stop:
        rc = stop.code
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and says in err[0], err
    assert not out.exists()


def killed_run_history(run_dir: Path, drop_step: int | None) -> dict:
    """metrics.csv of a run killed at env step 240 whose checkpoint (step 160) counted its first 5 rows, with the
    row of `drop_step` lost (a hand edit, a bad sector); returns the checkpoint's training state."""
    steps = [0, 48, 96, 144, 160, 192, 240]  # rows after 160 were logged after the checkpoint, by the killed process
    lines = ["env_steps,grad_steps,train/q"] + [f"{s},{s // 4},{s / 10}" for s in steps if s != drop_step]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return {"env_steps": 160, "metrics": {"rows": 5, "keys": ["env_steps", "grad_steps", "train/q"]}}


def test_a_metrics_history_that_lost_a_row_before_the_checkpoint_is_refused(tmp_path):
    # issue 19, failure 4 ("a damaged history is detected and reported, never silently dropped"): the row count
    # alone passed when later rows filled the gap, and the resumed curve lost step 48 and held step 192 twice
    ckpt = tmp_path / "checkpoints" / "0000000160"
    intact = check_history(tmp_path, ckpt, killed_run_history(tmp_path, None), repair=False)
    assert [int(r["env_steps"]) for r in intact.rows] == [0, 48, 96, 144, 160]
    with pytest.raises(CheckpointError, match=r"metrics\.csv .*192.*--repair-metrics"):
        check_history(tmp_path, ckpt, killed_run_history(tmp_path, 48), repair=False)


def test_flowft_warnings_print_as_one_line_from_the_cli():
    # issue 19, item 9: a damaged-checkpoint warning printed as `deploy.py:26: CheckpointWarning: ...` plus the
    # source line; from the CLI it is one line, and warnings of other packages keep Python's format
    import subprocess
    import sys

    code = ("import warnings\nfrom flowft.utils.logging import one_line_warnings\n"
            "from flowft.utils.manifest import CheckpointWarning\none_line_warnings()\n"
            "warnings.warn('checkpoint x: damaged', CheckpointWarning)\nwarnings.warn('plain', UserWarning)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.splitlines() == ["flowft: warning: checkpoint x: damaged", "<string>:6: UserWarning: plain"]


def test_a_resume_that_fails_to_load_does_not_change_the_budget(bc, tmp_path, monkeypatch):
    # `flowft resume RUN --env-steps N` wrote the new budget to config.json before loading the checkpoint, so a
    # resume that then failed had extended the run anyway; now the budget is recorded once the checkpoint has loaded
    import json
    from dataclasses import replace

    from helpers import tiny_train_config

    cfg = tiny_train_config(bc, tmp_path, run_name="b", critic_diag_episodes=0)  # 640 env steps, a checkpoint at 320
    Trainer(cfg).run(stop_at=320)
    run_dir, longer = tmp_path / "b", replace(cfg, run=replace(cfg.run, env_steps=960))
    budget = lambda: json.loads((run_dir / "config.json").read_text())["run"]["env_steps"]  # noqa: E731

    def unreadable(self, path):
        raise CheckpointError(f"{path}: unreadable")

    monkeypatch.setattr(Trainer, "_resume", unreadable)
    with pytest.raises(CheckpointError, match="unreadable"):
        Trainer(longer, run_dir=run_dir, resume=True)
    assert budget() == 640
    monkeypatch.undo()
    resumed = Trainer(longer, run_dir=run_dir, resume=True)
    resumed.close()
    assert budget() == 960 and resumed.env_steps == 320
