"""OGPO+CA on the toy task: from a BC checkpoint clipped to <= 50 % success to >= 0.9 (fixed seeds, 64 episodes).

This is the library's end-to-end learning test (~1 minute on 2 CPU cores)."""

import pytest

from flowft.algos.bc import pretrain
from flowft.data.readers.hdf5 import write_demos
from flowft.presets import bc_preset, train_preset
from flowft.registry import get_task
from flowft.train.loop import Trainer


def test_ogpo_lifts_clipped_bc_to_ninety_percent(tmp_path):
    task = get_task("toy")
    write_demos(tmp_path / "demos.hdf5", task.generate(200, 0, 0.1), task.meta())
    ckpt, bc = pretrain(bc_preset("toy", "tiny", str(tmp_path / "demos.hdf5"), out_dir=str(tmp_path), run_name="bc"))
    assert bc["bc/clipped"] and 0.45 <= bc["eval/success"] <= 0.5, bc
    cfg = train_preset("ogpo-plus-ca", "toy", "tiny", bc_checkpoint=str(ckpt), out_dir=str(tmp_path), run_name="rl")
    assert cfg.run.eval_episodes == 64
    trainer = Trainer(cfg)
    first = trainer.evaluate_now()
    trainer.evals = 0  # keep the run's own eval stream identical to an un-probed run
    assert first["eval/ode/success"] <= 0.5 and first["eval/bon/success"] <= 0.5, first
    final = trainer.run()
    assert final["eval/ode/success"] >= 0.9, final
    assert final["eval/bon/success"] >= 0.9, final
    assert final["eval/ode/episodes"] == 64
