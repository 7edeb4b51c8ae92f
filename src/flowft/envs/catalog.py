"""Built-in tasks. Simulator modules are imported inside the factories so that the core install never needs them."""

from __future__ import annotations

from flowft.envs import toy
from flowft.registry import TaskSpec, register_task

register_task(TaskSpec(
    name="toy",
    make=lambda render=False: toy.ToyReachEnv(render_mode="rgb_array" if render else None),
    generate=lambda n, seed, action_noise=0.1, **kw: toy.generate_episodes(n, seed, action_noise),
    meta=toy.env_meta,
    vectorization="sync",
    chunk_len=4,
    gamma=0.99,
    denoise_steps=5,
))
