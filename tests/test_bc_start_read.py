"""The BC gate's start read (issue 17, `confirm_start`): it re-reads exactly the episodes the finetuning run from the
saved weights evaluates at step 0, so the start the gate clipped is the start the run records."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from flowft.algos.bc import pretrain
from flowft.data.readers.hdf5 import write_demos
from flowft.presets import bc_preset
from flowft.registry import get_task
from flowft.train.evaluate import bc_start_read
from flowft.train.loop import Trainer

from helpers import tiny_train_config


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A toy BC whose gate clipped at its first check, with a start read for a run of seed 5 with 4 eval envs."""
    tmp_path = tmp_path_factory.mktemp("gated")
    task = get_task("toy")
    write_demos(tmp_path / "d.hdf5", task.generate(60, 0, 0.1), task.meta())
    # a plateau tolerance that always passes and a [0, 1] band: the first check confirms and clips; the run's seed
    # (5) and eval envs (4) differ from the BC's own (0, 8) so that the start read must follow start_seed/_eval_envs
    cfg = bc_preset("toy", "tiny", str(tmp_path / "d.hdf5"), gate="confirmed", steps=400, eval_every=200,
                    plateau_window=20, plateau_tol=10.0, clip_threshold=0.0, clip_max=1.0, eval_episodes=8,
                    eval_envs=8, confirm_episodes=24, start_seed=5, start_eval_envs=4, out_dir=str(tmp_path),
                    run_name="bc")
    ckpt, res = pretrain(cfg)
    return ckpt, res, json.loads((tmp_path / "bc" / "gate.json").read_text())


def test_the_start_read_is_the_finetuning_runs_step_0_evaluation(gated, tmp_path):
    ckpt, res, gate = gated
    assert res["bc/steps"] == 200 and res["bc/clipped"] and 0 < res["bc/start_success"] < 1, res
    assert res["eval/success"] == max(res["bc/start_success"], res["bc/independent_success"])
    assert gate["checks"][0]["start"] == res["bc/start_success"]
    run = Trainer(tiny_train_config(ckpt, tmp_path, seed=5, eval_episodes=24, eval_envs=4, run_name="rl"))
    first = run.evaluate_now()
    assert first["eval/ode/success"] == res["bc/start_success"] and first["eval/ode/episodes"] == 24
    assert first["eval/ode/return"] == gate["checks"][0]["start_return"]
    ode = {k: v for k, v in first.items() if k.startswith("eval/ode/")}
    assert ode == {f"eval/ode/{k}": res[f"bc/start_{k}"] for k in ("success", "return", "success_length", "episodes")}
    again = Trainer(tiny_train_config(ckpt, tmp_path, seed=6, eval_episodes=24, eval_envs=4, run_name="rl6"))
    assert again.evaluate_now()["eval/ode/return"] != first["eval/ode/return"]  # other seeds: other episodes


def test_a_run_logs_the_start_read_at_step_0_only_when_it_read_exactly_these_episodes(gated, tmp_path, monkeypatch):
    """--run.start-eval-from-bc: the step-0 row is the gate's start read and no step-0 evaluation runs; a run whose
    seed, episodes, eval envs or device differ from the read's evaluates as usual."""
    import flowft.train.loop as loop

    ckpt, res, _ = gated
    cfg = tiny_train_config(ckpt, tmp_path, seed=5, eval_episodes=24, eval_envs=4, run_name="reuse", env_steps=160,
                            start_training=160, eval_samplers=("ode",), start_eval_from_bc=True)
    streams, real = [], loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: streams.append(k["stream"]) or real(*a, **k))
    Trainer(cfg).run()
    assert streams == [1]  # the final evaluation only: evaluation 0 was not run again
    with open(tmp_path / "reuse" / "metrics.csv") as f:
        step0 = next(csv.DictReader(f))
    assert step0["env_steps"] == "0"
    for k in ("success", "return", "success_length", "episodes"):
        assert float(step0[f"eval/ode/{k}"]) == res[f"bc/start_{k}"], k
    assert bc_start_read(cfg.run) == {k: res[f"bc/start_{k}"] for k in ("success", "return", "success_length",
                                                                        "episodes")}
    for other in ({"seed": 6}, {"eval_episodes": 16}, {"eval_envs": 8}, {"device": "cuda"}):
        assert bc_start_read(dataclasses.replace(cfg.run, **other)) is None, other
