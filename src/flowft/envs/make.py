"""Vector-env construction with an explicit autoreset mode and SeedSequence seeds (conventions.md §B.8)."""

from __future__ import annotations

import contextlib

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from flowft.envs.taskspec import TaskSpec
from flowft.utils.seeding import env_seeds


class _Pool:
    """Idle vector envs by (task, num_envs, render, vectorization), and every env made inside the block."""

    def __init__(self):
        self.idle: dict[tuple, list[gym.vector.VectorEnv]] = {}
        self.made: dict[int, tuple[tuple, gym.vector.VectorEnv]] = {}  # id -> (key, env): ids alone get reused


_POOL: _Pool | None = None


@contextlib.contextmanager
def shared_vec_envs():
    """Inside this block a vector env given back with `release_vec_env` stays alive and is handed to the next
    `make_vec_env` call of the same task, size, render flag and vectorization instead of being built again; leaving
    the block closes the idle ones. Why: `flowft quickstart` evaluates its BC on 8 spawned robosuite envs and then
    built 8 more for the finetuning run's evaluations (each a process that imports and builds robosuite; reusing
    them cut the run's start from 89 to 78 s on Lift, 2 cores). Every user of an env resets it with explicit seeds
    before its first step (BC and run evaluations, the collector), so a reused env acts as a new one. Nested blocks
    share the outer pool."""
    global _POOL
    if _POOL is not None:
        yield
        return
    _POOL = _Pool()
    try:
        yield
    finally:
        pool, _POOL = _POOL, None
        for envs in pool.idle.values():
            for venv in envs:
                venv.close()


def release_vec_env(venv: gym.vector.VectorEnv) -> None:
    """Close `venv`, or keep it for reuse when a `shared_vec_envs` block made it."""
    key, made = _POOL.made.get(id(venv), (None, None)) if _POOL is not None else (None, None)
    if made is not venv or getattr(venv, "closed", False):
        venv.close()
    else:
        _POOL.idle.setdefault(key, []).append(venv)


def make_vec_env(task: TaskSpec, num_envs: int, render: bool = False, vectorization: str | None = None) -> gym.vector.VectorEnv:
    """SAME_STEP autoreset: on an episode end the buffer gets the true final obs from info["final_obs"]."""
    mode = vectorization or task.vectorization
    mode = "async" if mode == "async" and num_envs > 1 else "sync"
    key = (task.name, id(task), num_envs, render, mode)  # id: a task re-registered under the same name differs
    if _POOL is not None and _POOL.idle.get(key):
        return _POOL.idle[key].pop()
    fns = [lambda: task.make(render) for _ in range(num_envs)]
    if mode == "async":
        venv = gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP, context="spawn")
    else:
        venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    if _POOL is not None:
        _POOL.made[id(venv)] = (key, venv)
    return venv


def reset_vec_env(venv: gym.vector.VectorEnv, seed: int, stream: int) -> np.ndarray:
    obs, _ = venv.reset(seed=env_seeds(seed, venv.num_envs, stream))
    return obs


def step_outcome(info: dict, done: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true next obs [N, Do], success [N]) after a SAME_STEP vector step: for finished envs the final
    observation and final info replace the reset ones."""
    next_obs = obs.copy()
    success = np.asarray(info.get("success", np.zeros(len(done), bool)), bool).copy()
    if done.any():
        mask = info["_final_obs"]
        final_obs = np.stack([info["final_obs"][i] if mask[i] else obs[i] for i in range(len(done))])
        next_obs[mask] = final_obs[mask]
        fin = info["final_info"]
        if "success" in fin:
            success[mask] = np.asarray(fin["success"], bool)[mask]
    return next_obs, success
