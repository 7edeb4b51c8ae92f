"""Exact resume: a run interrupted at a checkpoint and resumed is bit-identical to an uninterrupted run (CPU)."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from flowft.train.loop import Trainer
from flowft.utils.checkpoint import latest_checkpoint
from helpers import make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def final_weights(run_dir):
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def test_resume_is_bit_identical(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path)
    full = Trainer(replace(cfg, run=replace(cfg.run, run_name="full")))
    full.run()
    part = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")))
    part.run(stop_at=320)
    assert latest_checkpoint(part.run_dir).name == "0000000320"
    assert part.algo.grad_steps > 0  # updates happened before the interruption
    resumed = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")), run_dir=part.run_dir, resume=True)
    assert resumed.env_steps == 320
    resumed.run()
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.algo.grad_steps == resumed.algo.grad_steps
    # metrics.csv of the resumed run continues without duplicated rows
    rows = (part.run_dir / "metrics.csv").read_text().strip().splitlines()
    steps = [line.split(",")[0] for line in rows[1:]]
    assert len(steps) == len(set(steps))


def test_checkpoint_from_another_config_is_rejected(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, env_steps=320)
    t = Trainer(replace(cfg, run=replace(cfg.run, run_name="a")))
    t.run()
    other = replace(cfg, algo=replace(cfg.algo, group_size=4), run=replace(cfg.run, run_name="a"))
    with pytest.raises(ValueError, match="group_size"):
        Trainer(other, run_dir=t.run_dir, resume=True)
