"""Small fake envs for the env-contract tests (tests/test_own_env.py), importable by env specs (`fake_envs:NAME`).

PointEnv meets flowft's env contract. FetchLike breaks it the way gymnasium-robotics Fetch does (Dict observation,
float `is_success`, no termination on success) and has action bounds [-2, 2]; the others each break one more item.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class PointEnv(gym.Env):
    """A point on a line reaches a goal: obs (p, g) float32, action [-1, 1] moves it by 0.25 * a; success when
    |p - g| < 0.1 ends the episode (reward 0), else -1; truncated at `horizon` steps."""

    def __init__(self, horizon: int = 10, render_mode: str | None = None):
        self.horizon, self.render_mode = horizon, render_mode
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.p = self.g = 0.0
        self.t = 0

    def _obs(self):
        return np.array([self.p, self.g], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.p, self.g, self.t = 0.0, float(self.np_random.choice([-1.0, 1.0])), 0
        return self._obs(), {"success": False}

    def _move(self, action) -> bool:
        self.p = float(np.clip(self.p + 0.25 * float(np.clip(np.asarray(action).ravel()[0], -1, 1)), -2, 2))
        self.t += 1
        return abs(self.p - self.g) < 0.1

    def step(self, action):
        success = self._move(action)
        return self._obs(), 0.0 if success else -1.0, success, self.t >= self.horizon and not success, \
            {"success": success}

    def render(self):
        return np.zeros((8, 8, 3), np.uint8)


def point_expert(obs: np.ndarray) -> np.ndarray:
    return np.array([np.clip((obs[1] - obs[0]) / 0.25, -1, 1)], np.float32)


class FetchLike(PointEnv):
    """PointEnv with Fetch's mismatches: a Dict observation (float64), info `is_success` as a float, episodes that go
    on after success (reward -distance), action bounds [-2, 2] (the env halves them back to PointEnv's)."""

    def __init__(self, horizon: int = 10, render_mode: str | None = None):
        super().__init__(horizon, render_mode)
        box = gym.spaces.Box(-2.0, 2.0, (1,), np.float64)
        self.observation_space = gym.spaces.Dict({"observation": box, "desired_goal": box, "achieved_goal": box})
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def _obs(self):
        return {"observation": np.array([self.p]), "desired_goal": np.array([self.g]),
                "achieved_goal": np.array([self.p])}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        success = self._move(np.asarray(action) / 2.0)
        return self._obs(), -abs(self.p - self.g), False, self.t >= self.horizon, {"is_success": float(success)}


class EndlessEnv(PointEnv):
    """Never terminates nor truncates."""

    def step(self, action):
        self._move(action)
        return self._obs(), -1.0, False, False, {"success": False}


class UnseededEnv(PointEnv):
    """reset(seed) ignores the seed (a global RNG picks the goal, like an MT1-style task sampler)."""

    _global = np.random.default_rng()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.g = float(self._global.uniform(-1, 1))
        return self._obs(), {"success": False}


class PixelEnv(PointEnv):
    """An image observation (non-flat)."""

    def __init__(self, horizon: int = 10, render_mode: str | None = None):
        super().__init__(horizon, render_mode)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2, 4, 4), np.float32)

    def _obs(self):
        return np.full((2, 4, 4), self.p, np.float32)


def make_fetch_like(render_mode: str | None = None, horizon: int = 10) -> gym.Env:
    return FetchLike(horizon, render_mode)


# the spec that makes FetchLike meet the contract (the guide's FetchPush spec, on the fake env)
FETCH_LIKE_SPEC = ('{"env": "fake_envs:make_fetch_like", "expert": "fake_envs:fetch_like_expert", '
                   '"success_key": "is_success", "terminate_on_success": true, "sparse_reward": true, '
                   '"obs_keys": ["observation", "desired_goal"], "rescale_actions": true, "chunk_len": 2}')


def fetch_like_expert(obs: np.ndarray) -> np.ndarray:
    """On the adapted FetchLike: obs = (p, g); action in [-1, 1] (the adapter rescales it to [-2, 2])."""
    return np.array([np.clip((obs[1] - obs[0]) / 0.25, -1, 1)], np.float32)
