"""One evaluation routine for training-time eval, BC clipping and `flowft eval` (same numbers everywhere)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from flowft.envs.make import reset_vec_env
from flowft.train.collector import ActFn, ChunkCollector


def evaluate(act_fn: ActFn, venv: gym.vector.VectorEnv, chunk_len: int, episodes: int, seed: int, stream: int,
             device: torch.device, frames: list | None = None) -> dict[str, float]:
    """Run `episodes` episodes (ceil(episodes/N) rounds on N envs, distinct reset seeds per round/env).

    Episodes are kept in (round, env) order, so early-finishing (successful) episodes are not over-counted.
    Returns success rate, mean return, mean length of successful episodes and the episode count.
    If `frames` is a list, env 0's rendered frames of its first episode are appended to it.
    """
    N = venv.num_envs
    rounds = math.ceil(episodes / N)
    col = ChunkCollector(venv, chunk_len, device)
    col.start(reset_vec_env(venv, seed, stream))
    done_count = np.zeros(N, np.int64)
    results: dict[tuple[int, int], dict] = {}
    while (done_count < rounds).any():
        if frames is not None and done_count[0] == 0:
            frames.append(venv.call("render")[0])
        res = col.step(act_fn)
        for ep in res.finished:
            n = ep["env"]
            if done_count[n] < rounds:
                results[(int(done_count[n]), n)] = ep
            done_count[n] += 1
    eps = [results[k] for k in sorted(results)][:episodes]
    succ = np.array([e["success"] for e in eps], float)
    lengths = [e["length"] for e in eps if e["success"]]
    return {"success": float(succ.mean()), "return": float(np.mean([e["return"] for e in eps])),
            "success_length": float(np.mean(lengths)) if lengths else float("nan"), "episodes": float(len(eps))}
