"""Open-loop action-chunk execution over a gymnasium vector env (SAME_STEP autoreset).

Each env keeps a queue of the H actions of its current chunk; a new chunk is requested only for envs whose
queue is empty or whose episode just ended. The collector never decides actions itself: it calls `act_fn`.
Shapes: N envs, H chunk, Da, Do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from flowft.envs.make import step_outcome

ActFn = Callable[[torch.Tensor], torch.Tensor]  # obs [n, Do] -> chunk [n, H, Da]


@dataclass
class StepResult:
    obs: np.ndarray  # [N, Do] observation the action was taken in
    actions: np.ndarray  # [N, Da]
    rewards: np.ndarray  # [N]
    terminated: np.ndarray  # [N]
    truncated: np.ndarray  # [N]
    next_obs: np.ndarray  # [N, Do] true next obs (final obs on episode end)
    success: np.ndarray  # [N] success flag of this step (final info on episode end)
    finished: list[dict] = field(default_factory=list)  # episodes that ended: return, length, success, env
    new_chunk: np.ndarray | None = None  # [N] bool: envs that got a new chunk (a policy decision) at this step


class ChunkCollector:
    def __init__(self, venv: gym.vector.VectorEnv, chunk_len: int, device: torch.device):
        self.venv, self.H, self.device = venv, chunk_len, device
        self.N = venv.num_envs
        self.act_dim = int(np.prod(venv.single_action_space.shape))
        self.obs: np.ndarray | None = None
        self.queue = np.zeros((self.N, chunk_len, self.act_dim), np.float32)  # [N, H, Da]
        self.qpos = np.full(self.N, chunk_len)  # H = empty
        self.ep_ret = np.zeros(self.N)
        self.ep_len = np.zeros(self.N, np.int64)
        self._async = hasattr(venv, "step_async")  # gymnasium >= 1.0: only AsyncVectorEnv splits its step
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # (new_chunk [N], actions [N, Da]) in flight

    def start(self, obs: np.ndarray) -> None:
        self.obs = np.asarray(obs, np.float32)
        self.qpos[:] = self.H
        self.ep_ret[:] = 0.0
        self.ep_len[:] = 0

    def step(self, act_fn: ActFn) -> StepResult:
        self.step_async(act_fn)
        return self.step_wait()

    def step_async(self, act_fn: ActFn) -> None:
        """Decide this step's actions (new chunks where needed) and send them to the envs. An AsyncVectorEnv
        steps in its worker processes until `step_wait`, so the caller can run updates meanwhile; a sync env
        steps inside `step_wait`."""
        if self._pending is not None:
            raise RuntimeError("ChunkCollector.step_async called twice without step_wait")
        need = self.qpos >= self.H  # [N] bool
        if need.any():
            chunk = act_fn(torch.as_tensor(self.obs[need], device=self.device))
            if tuple(chunk.shape[1:]) != (self.H, self.act_dim):
                raise ValueError(f"policy returned chunks of shape {tuple(chunk.shape[1:])}, "
                                 f"env expects (chunk_len={self.H}, act_dim={self.act_dim})")
            self.queue[need] = chunk.detach().cpu().numpy()
            self.qpos[need] = 0
        actions = self.queue[np.arange(self.N), self.qpos].copy()  # [N, Da]
        self.qpos += 1
        if self._async:
            self.venv.step_async(actions)
        self._pending = (need, actions)

    def step_wait(self) -> StepResult:
        if self._pending is None:
            raise RuntimeError("ChunkCollector.step_wait called without step_async")
        need, actions = self._pending
        self._pending = None
        obs_next, rew, term, trunc, info = self.venv.step_wait() if self._async else self.venv.step(actions)
        term, trunc = np.asarray(term, bool), np.asarray(trunc, bool)
        done = term | trunc
        next_obs, success = step_outcome(info, done, np.asarray(obs_next, np.float32))
        res = StepResult(self.obs, actions, np.asarray(rew, np.float32), term, trunc, next_obs, success, new_chunk=need)
        self.ep_ret += res.rewards
        self.ep_len += 1
        for n in np.flatnonzero(done):
            res.finished.append({"env": int(n), "return": float(self.ep_ret[n]), "length": int(self.ep_len[n]),
                                 "success": bool(success[n])})
            self.ep_ret[n], self.ep_len[n], self.qpos[n] = 0.0, 0, self.H
        self.obs = np.asarray(obs_next, np.float32)
        return res

    def flush(self) -> None:
        """Drop the rest of every env's chunk: all envs request a new chunk at the next step (on-policy rollout
        boundaries, so that no decision spans two rollouts)."""
        self.qpos[:] = self.H

    # exact resume: the collector's own state as arrays (env internals are saved separately when possible)
    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"obs": self.obs, "queue": self.queue, "qpos": self.qpos, "ep_ret": self.ep_ret, "ep_len": self.ep_len}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.obs = arrays["obs"].astype(np.float32)
        self.queue[...], self.qpos[...] = arrays["queue"], arrays["qpos"]
        self.ep_ret[...], self.ep_len[...] = arrays["ep_ret"], arrays["ep_len"]


def env_states(venv: gym.vector.VectorEnv) -> list[dict] | None:
    """Per-env simulator state when every env supports get_state (the toy env does); else None."""
    if not isinstance(venv, gym.vector.SyncVectorEnv):
        return None
    envs = [e.unwrapped for e in venv.envs]
    if not all(hasattr(e, "get_state") for e in envs):
        return None
    return [e.get_state() for e in envs]


def restore_env_states(venv: gym.vector.SyncVectorEnv, states: list[dict]) -> None:
    for e, s in zip(venv.envs, states):
        e.unwrapped.set_state(s)
