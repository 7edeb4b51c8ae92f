"""Exact resume: a run interrupted at a checkpoint and resumed is bit-identical to an uninterrupted run (CPU)."""

import csv
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
    cfg = replace(cfg, run=replace(cfg.run, log=replace(cfg.run.log, log_every=160)))  # training rows around 320
    full = Trainer(replace(cfg, run=replace(cfg.run, run_name="full")))
    full.run()
    part = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")))
    part.run(stop_at=320)
    assert latest_checkpoint(part.run_dir).name == "0000000320"
    assert part.algo.grad_steps > 0  # updates happened before the interruption
    resumed = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")), run_dir=part.run_dir, resume=True)
    assert resumed.env_steps == 320
    # the train/episode_* window (last 50 finished episodes) continues instead of restarting empty
    assert part.recent and resumed.recent == part.recent
    resumed.run()
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.algo.grad_steps == resumed.algo.grad_steps
    # one provenance line per sitting, both naming this code
    from flowft.utils.provenance import source_digest, sources
    lines = (part.run_dir / "provenance.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len((full.run_dir / "provenance.jsonl").read_text().splitlines()) == 1
    assert sources(part.run_dir) == [source_digest()]
    # metrics.csv of the resumed run continues without duplicated rows
    rows = (part.run_dir / "metrics.csv").read_text().strip().splitlines()
    steps = [line.split(",")[0] for line in rows[1:]]
    assert len(steps) == len(set(steps))
    # and logs what the uninterrupted run logged after the resume point, the training-episode window included
    # (its last-50-episodes mean restarted empty on resume before the window was checkpointed)
    full_rows = {r["env_steps"]: r for r in csv.DictReader((full.run_dir / "metrics.csv").open())}
    after = [r for r in csv.DictReader((part.run_dir / "metrics.csv").open()) if int(r["env_steps"]) > 320]
    assert after and any(r["train/episode_success"] for r in after)
    for r in after:
        for key in ("train/episode_success", "train/episode_return", "train/episode_length"):
            assert r[key] == full_rows[r["env_steps"]][key], (r["env_steps"], key)


def test_checkpoint_from_another_config_is_rejected(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, env_steps=320)
    t = Trainer(replace(cfg, run=replace(cfg.run, run_name="a")))
    t.run()
    other = replace(cfg, algo=replace(cfg.algo, group_size=4), run=replace(cfg.run, run_name="a"))
    with pytest.raises(ValueError, match="group_size"):
        Trainer(other, run_dir=t.run_dir, resume=True)


def test_cli_resume_continues_a_killed_run(bc, tmp_path):
    """`flowft train` is SIGKILLed after its first checkpoint; `flowft resume RUN_DIR` finishes the budget."""
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "flowft", "train", "ogpo-plus-ca", "--task", "toy", "--run.bc-checkpoint", str(bc),
           "--run.env-steps", "4000", "--run.start-training", "160", "--run.num-envs", "4", "--run.ckpt-every", "320",
           "--run.eval-every", "100000", "--run.eval-episodes", "4", "--run.eval-envs", "4", "--run.no-plot",
           "--run.out-dir", str(tmp_path), "--run.run-name", "killed", "--algo.group-size", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "last.txt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    first = latest_checkpoint(run_dir)
    assert int(first.name) < 4000  # killed mid-run
    out = subprocess.run([sys.executable, "-m", "flowft", "resume", str(run_dir)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"from {first.name}" in out.stderr
    assert latest_checkpoint(run_dir).name == "0000004000"
