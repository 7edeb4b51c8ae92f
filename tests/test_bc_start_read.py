"""The BC gate's start read (issue 17, `confirm_start`): it re-reads exactly the episodes the finetuning run from the
saved weights evaluates at step 0, so the start the gate clipped is the start the run records."""

from __future__ import annotations

import json

from flowft.algos.bc import pretrain
from flowft.data.readers.hdf5 import write_demos
from flowft.presets import bc_preset
from flowft.registry import get_task
from flowft.train.loop import Trainer

from helpers import tiny_train_config


def test_the_start_read_is_the_finetuning_runs_step_0_evaluation(tmp_path):
    task = get_task("toy")
    write_demos(tmp_path / "d.hdf5", task.generate(60, 0, 0.1), task.meta())
    # a plateau tolerance that always passes and a [0, 1] band: the first check confirms and clips; the run's seed
    # (5) and eval envs (4) differ from the BC's own (0, 8) so that the start read must follow start_seed/_eval_envs
    cfg = bc_preset("toy", "tiny", str(tmp_path / "d.hdf5"), gate="confirmed", steps=400, eval_every=200,
                    plateau_window=20, plateau_tol=10.0, clip_threshold=0.0, clip_max=1.0, eval_episodes=8,
                    eval_envs=8, confirm_episodes=24, start_seed=5, start_eval_envs=4, out_dir=str(tmp_path),
                    run_name="bc")
    ckpt, res = pretrain(cfg)
    assert res["bc/steps"] == 200 and res["bc/clipped"] and 0 < res["bc/start_success"] < 1, res
    assert res["eval/success"] == max(res["bc/start_success"], res["bc/independent_success"])
    gate = json.loads((tmp_path / "bc" / "gate.json").read_text())
    assert gate["checks"][0]["start"] == res["bc/start_success"]
    run = Trainer(tiny_train_config(ckpt, tmp_path, seed=5, eval_episodes=24, eval_envs=4, run_name="rl"))
    first = run.evaluate_now()
    assert first["eval/ode/success"] == res["bc/start_success"] and first["eval/ode/episodes"] == 24
    assert first["eval/ode/return"] == gate["checks"][0]["start_return"]
    again = Trainer(tiny_train_config(ckpt, tmp_path, seed=6, eval_episodes=24, eval_envs=4, run_name="rl6"))
    assert again.evaluate_now()["eval/ode/return"] != first["eval/ode/return"]  # other seeds: other episodes
