"""Shared test fixtures' building blocks: a tiny BC checkpoint on the toy task, fake finished run dirs."""

from __future__ import annotations

import json
from pathlib import Path

from flowft.algos.bc import pretrain
from flowft.data.readers.hdf5 import write_demos
from flowft.presets import bc_preset, train_preset
from flowft.registry import get_task


def random_buffer():
    """A replay buffer of 200 steps x 2 envs of random data (obs 6, action 2, H = 4) with episode ends and successes:
    enough for OGPO updates built by hand (tests of the update's numerics, not of learning)."""
    import numpy as np

    from flowft.data.buffer import ReplayBuffer

    rng = np.random.default_rng(0)
    buf = ReplayBuffer(2, 2000, 6, 2, 4, seed=0)
    for t in range(200):
        d = np.array([t % 20 == 19, t % 30 == 29])
        buf.add_batch(rng.standard_normal((2, 6)), rng.uniform(-1, 1, (2, 2)), -np.ones(2), d, np.zeros(2, bool),
                      rng.standard_normal((2, 6)), d)
    return buf


def make_bc_checkpoint(root: Path, steps: int = 300, clip: bool = False, policy=None, **kw) -> Path:
    """BC on 60 toy demos; `policy`: a FlowPolicyConfig other than the toy tiny preset's."""
    from dataclasses import replace

    task = get_task("toy")
    demos = root / "toy.hdf5"
    if not demos.exists():
        write_demos(demos, task.generate(60, 0, 0.1), task.meta())
    cfg = bc_preset("toy", "tiny", str(demos), steps=steps, eval_every=steps, clip=clip, eval_episodes=16,
                    eval_envs=8, out_dir=str(root), run_name=f"bc-{steps}-{clip}", **kw)
    ckpt, _ = pretrain(cfg if policy is None else replace(cfg, policy=policy))
    return ckpt


def tiny_train_config(bc: Path, out: Path, algo: str = "ogpo-plus-ca", **run):
    base = dict(bc_checkpoint=str(bc), out_dir=str(out), env_steps=640, start_training=160, eval_every=10_000,
                eval_episodes=8, eval_envs=4, ckpt_every=320, num_envs=4, plot=False, buffer_capacity=20_000)
    base.update(run)
    return train_preset(algo, "toy", "tiny", **base)


def final_weights(run_dir: Path) -> dict:
    """Weights of a run directory's latest checkpoint."""
    from safetensors.torch import load_file

    from flowft.utils.checkpoint import latest_checkpoint

    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def full_and_resumed_runs(cfg, stop_at: int):
    """The exact-resume experiment: an uninterrupted run ("full") and a run stopped right after its checkpoint at
    `stop_at` ("part") then resumed to the budget. Returns (full, full's last eval, part, resumed) trainers/results;
    callers compare final_weights(full.run_dir) with final_weights(part.run_dir)."""
    from dataclasses import replace

    from flowft.train.loop import Trainer

    full = Trainer(replace(cfg, run=replace(cfg.run, run_name="full")))
    last = full.run()
    part = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")))
    part.run(stop_at=stop_at)
    resumed = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")), run_dir=part.run_dir, resume=True)
    assert resumed.env_steps == stop_at, "resume starts from the interrupted run's last checkpoint"
    resumed.run()
    return full, last, part, resumed


def fake_run(root: Path, algo: str, seed: int, steps, cols: dict, task: str = "toy") -> Path:
    """A finished run dir as `flowft report` reads it: config.json + metrics.csv with `cols` per eval step."""
    d = root / task / algo / f"s{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"algo_name": algo, "run": {"task": task, "seed": seed}}))
    keys = ["env_steps", "grad_steps", *cols]
    cell = lambda v: "" if v is None else str(v)  # noqa: E731  (empty = not logged in that row)
    lines = [",".join(keys)] + [",".join([str(s), "0", *(cell(cols[k][i]) for k in cols)])
                                for i, s in enumerate(steps)]
    (d / "metrics.csv").write_text("\n".join(lines) + "\n")
    return d
