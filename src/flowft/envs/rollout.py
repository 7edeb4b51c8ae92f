"""Recording scripted-expert episodes in the flowft episode format (shared by the demo generators)."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np


def record_episode(env: gym.Env, expert: Callable[[np.ndarray], np.ndarray], seed: int, action_noise: float,
                   rng: np.random.Generator) -> tuple[dict, dict]:
    """Run one episode; Gaussian noise (std `action_noise`) is added to the expert action and the executed,
    clipped action is recorded. Returns ({"obs": {"obs": [T, Do]}, "actions", "rewards", "dones", "success"},
    the last step's info). obs[t] is the observation before actions[t]."""
    o, _ = env.reset(seed=seed)
    obs, acts, rews, dones = [], [], [], []
    success, info = False, {}
    while True:
        a = np.asarray(expert(o), np.float64)
        if action_noise > 0:
            a = a + action_noise * rng.standard_normal(a.shape)
        a = np.clip(a, -1.0, 1.0).astype(np.float32)
        obs.append(o)
        acts.append(a)
        o, r, term, trunc, info = env.step(a)
        rews.append(r)
        dones.append(term or trunc)
        success = success or bool(info["success"])
        if term or trunc:
            break
    episode = {"obs": {"obs": np.stack(obs).astype(np.float32)}, "actions": np.stack(acts),
               "rewards": np.asarray(rews, np.float32), "dones": np.asarray(dones, bool), "success": bool(success)}
    return episode, info
