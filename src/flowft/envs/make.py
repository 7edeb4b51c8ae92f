"""Vector-env construction with an explicit autoreset mode and SeedSequence seeds (conventions.md §B.8)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from flowft.envs.taskspec import TaskSpec
from flowft.utils.seeding import env_seeds


def make_vec_env(task: TaskSpec, num_envs: int, render: bool = False, vectorization: str | None = None) -> gym.vector.VectorEnv:
    """SAME_STEP autoreset: on an episode end the buffer gets the true final obs from info["final_obs"]."""
    fns = [lambda: task.make(render) for _ in range(num_envs)]
    mode = vectorization or task.vectorization
    if mode == "async" and num_envs > 1:
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP, context="spawn")
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


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
