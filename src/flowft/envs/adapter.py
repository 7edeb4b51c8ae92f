"""FlowftAdapter: one gymnasium wrapper for the common mismatches between an env and flowft's env contract.

The contract (docs/own_env.md): a flat float32 Box observation; `info["success"]` a bool, read at the episode's last
step; episodes end on success; rewards used as returned; actions in [-1, 1]. Each option fixes one mismatch:

  success_key          copy info[success_key] (e.g. Fetch's `is_success`, a float) to info["success"] as a bool
  terminate_on_success terminated = terminated or success (flowft reads success at the last step only)
  sparse_reward        reward = 0 on success, else -1 (the sparse reward of the paper's tasks)
  obs_keys             flatten a Dict observation: each listed key raveled, concatenated in the listed order
  rescale_actions      expose Box(-1, 1); map a policy action a to low + (a + 1) / 2 * (high - low) (and back with
                       `action_from_env`)

Observations are always cast to float32 (as is the exposed space), and info["success"] is always a bool.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

ADAPTER_OPTIONS = ("success_key", "terminate_on_success", "sparse_reward", "obs_keys", "rescale_actions")


class FlowftAdapter(gym.Wrapper):
    def __init__(self, env: gym.Env, *, success_key: str | None = None, terminate_on_success: bool = False,
                 sparse_reward: bool = False, obs_keys: Sequence[str] | None = None, rescale_actions: bool = False):
        super().__init__(env)
        self.success_key, self._explicit_key = success_key or "success", success_key is not None
        self.terminate_on_success, self.sparse_reward = terminate_on_success, sparse_reward
        self.obs_keys = tuple(obs_keys) if obs_keys else None
        self.observation_space = self._obs_space(env.observation_space)
        self._low = self._high = None
        if rescale_actions:
            self._low, self._high = _finite_bounds(env.action_space)
            self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)

    # ------------------------------------------------------------------ observations
    def _obs_space(self, space: gym.Space) -> gym.Space:
        if self.obs_keys is None:
            if isinstance(space, gym.spaces.Box):
                return gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), space.shape,
                                      np.float32)
            return space  # a Dict without obs_keys stays a Dict: the checker names it (the order must be stated)
        if not isinstance(space, gym.spaces.Dict):
            raise ValueError(f"obs_keys {list(self.obs_keys)} given, but the observation space is {space}, not a Dict")
        missing = [k for k in self.obs_keys if k not in space.spaces]
        if missing:
            raise ValueError(f"obs_keys {missing} not in the observation Dict (keys: {list(space.spaces)})")
        parts = [space.spaces[k] for k in self.obs_keys]
        bad = [k for k, p in zip(self.obs_keys, parts) if not isinstance(p, gym.spaces.Box)]
        if bad:
            raise ValueError(f"obs_keys {bad}: not Box spaces, cannot be flattened")
        low = np.concatenate([p.low.ravel() for p in parts]).astype(np.float32)
        high = np.concatenate([p.high.ravel() for p in parts]).astype(np.float32)
        return gym.spaces.Box(low, high, low.shape, np.float32)

    def observation(self, obs: Any) -> Any:
        if self.obs_keys is not None:  # [Do]: the keys' raveled values, in the stated order
            return np.concatenate([np.ravel(obs[k]) for k in self.obs_keys]).astype(np.float32)
        if isinstance(obs, np.ndarray):
            return obs.astype(np.float32, copy=False)
        return obs

    # ------------------------------------------------------------------ actions
    def action(self, action: np.ndarray) -> np.ndarray:
        """Policy action in [-1, 1] -> the env's bounds (identity without rescale_actions)."""
        if self._low is None:
            return action
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        return (self._low + (a + 1.0) * 0.5 * (self._high - self._low)).astype(self.env.action_space.dtype)

    def action_from_env(self, env_action: np.ndarray) -> np.ndarray:
        """The inverse of `action`: an action in the env's units (e.g. a recorded demo) -> [-1, 1]."""
        if self._low is None:
            return np.asarray(env_action, np.float32)
        a = np.asarray(env_action, np.float64)
        return (2.0 * (a - self._low) / (self._high - self._low) - 1.0).astype(np.float32)

    # ------------------------------------------------------------------ success, termination, reward
    def _success(self, info: dict) -> bool | None:
        """info[success_key] as a bool; None when the env reports no success and no success_key was set (left to
        the checker to name)."""
        if self.success_key in info:
            return bool(info[self.success_key])
        if self._explicit_key or self.terminate_on_success or self.sparse_reward:
            raise KeyError(f"FlowftAdapter: info has no '{self.success_key}' (info keys: {sorted(info)}); "
                           "set success_key to the env's success flag")
        return None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        if self.success_key in info or self._explicit_key:
            info["success"] = bool(info.get(self.success_key, False))
        return self.observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        info = dict(info)
        success = self._success(info)
        if success is not None:
            info["success"] = success
            terminated = bool(terminated) or (self.terminate_on_success and success)
            if self.sparse_reward:
                reward = 0.0 if success else -1.0
        return self.observation(obs), reward, terminated, truncated, info


def _finite_bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"rescale_actions needs a Box action space, got {space}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    unbounded = np.flatnonzero(~(np.isfinite(low) & np.isfinite(high)).ravel())
    if unbounded.size:
        raise ValueError(f"rescale_actions: action dims {unbounded.tolist()} are unbounded; give the env finite bounds")
    return low, high
