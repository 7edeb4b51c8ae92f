"""`flowft quickstart`: Lift is the default (budget sized for 2 CPU cores); the fast suite runs it on the toy task."""

import importlib.util

import pytest

from flowft.cli import main
from flowft.presets import bc_preset, train_preset
from flowft.quickstart import QUICKSTART, QuickstartArgs, check_simulator


def test_default_task_is_lift_with_a_short_budget():
    assert QuickstartArgs().task == "lift"
    run = train_preset("ogpo-plus-ca", "lift", "tiny", **QUICKSTART["lift"]["run"]).run
    # 50k: the Lift preset with Best-of-8 read 0.92 / 0.97 / 0.88 there from three honest starts (docs/results.md
    # section 9); evals at 0, halfway, end
    assert run.env_steps == 50_000 and run.env_steps // run.eval_every == 2
    bc = bc_preset("lift", "tiny", "x.hdf5")
    # the 15-minute budget: the ODE policy only is evaluated, step 0 takes the BC gate's start read of the same
    # episodes (the BC's start_seed defaults to its seed, the run's), the OGPO update runs compiled and overlaps the
    # simulator steps (level with no overlap at 50k over four paired runs, all >= 0.9)
    assert run.eval_samplers == ("ode",) and run.start_eval_from_bc and run.compile and run.overlap_updates
    assert (bc.start_seed, bc.start_eval_envs, bc.confirm_episodes) == (None, run.eval_envs, run.eval_episodes)
    preset = train_preset("ogpo-plus-ca", "lift", "tiny")
    assert not preset.run.compile and not preset.run.overlap_updates  # the preset itself: eager, no overlap
    # simulator presets act with one SDE sample until the critic has had 2000 updates, then with Best-of-8
    algo = preset.algo
    assert (algo.best_of_n, algo.bon_after_updates) == (8, 2000)
    # issue 17: the clip is decided on a 64-episode confirmation of the ODE policy (the one every run reports at
    # step 0) after the loss has flattened; the cheap 16-episode check reads the ODE policy too
    assert (bc.gate, bc.confirm_sampler, bc.confirm_episodes, bc.clip_sampler) == ("confirmed", "ode", 64, "ode")
    assert bc.clip_max <= 0.5 and bc.min_steps > 0
    # the paper preset acts with Best-of-N from step 0, and its cheap check does too
    assert train_preset("ogpo-plus-ca", "lift", "paper").algo.best_of_n > 1
    assert bc_preset("lift", "paper", "x.hdf5").clip_sampler == "bon"


def test_missing_simulator_names_the_extra_and_the_toy_task(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "robosuite" else real(name, *a))
    with pytest.raises(SystemExit, match=r"flowft\[robomimic\].*--task toy"):
        check_simulator("lift")
    check_simulator("toy")  # no simulator needed


def test_quickstart_toy_end_to_end(tmp_path, capsys):
    assert main(["quickstart", "--task", "toy", "--env-steps", "400", "--out-dir", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    assert "BC stopped" in cap.err and "quickstart done" in cap.out
    runs = [p for p in tmp_path.iterdir() if p.name.startswith("ogpo-plus-ca-toy")]
    assert len(runs) == 1 and (runs[0] / "plots" / "learning_curve.png").exists()
    assert (runs[0] / "checkpoints").is_dir()


def test_quickstart_without_the_rollout_sampler_says_how_to_evaluate_it(tmp_path, capsys, monkeypatch):
    """Lift's quickstart evaluates the ODE policy only: the summary names the command that evaluates the rollout
    sampler instead of printing a number it did not measure."""
    import flowft.quickstart as qs

    monkeypatch.setitem(qs.QUICKSTART, "toy", {**qs.QUICKSTART["toy"], "run": {"eval_samplers": ("ode",)}})
    assert main(["quickstart", "--task", "toy", "--env-steps", "400", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    run = next(p for p in tmp_path.iterdir() if p.name.startswith("ogpo-plus-ca-toy"))
    assert "rollout sampler (" not in out and f"flowft eval {run} --samplers bon" in out
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "eval/ode/success" in header and not any(h.startswith("eval/bon/") for h in header)
