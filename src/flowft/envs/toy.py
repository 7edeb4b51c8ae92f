"""Pure-numpy multimodal reaching task: the CI / unit-test environment.

A point starts near the origin; two goals are drawn each episode, one on the left and one on the right.
Reaching either (|p - g| < radius) is success: reward 0 and termination; every other step costs -1
(the sparse -1/0 reward of the paper's robot tasks). Actions are velocity commands in [-1, 1]^2 (scaled by
`speed`), executed in chunks by the collector; a little process noise makes open-loop chunks imperfect.

Demonstrations come from a scripted expert that commits to a random goal per episode, so the demo action
distribution is bimodal: a flow policy must represent both modes, and a half-trained one averages them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from flowft.envs.demo_progress import episode_done


class ToyReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, horizon: int = 12, radius: float = 0.1, speed: float = 0.12, noise: float = 0.01,
                 random_goals: bool = True, render_mode: str | None = None):
        self.horizon, self.radius, self.speed, self.noise = horizon, radius, speed, noise
        self.random_goals = random_goals
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.p = np.zeros(2)
        self.goals = np.zeros((2, 2))
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.p, self.goals.ravel()]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        r = self.np_random
        self.p = r.uniform(-0.15, 0.15, 2)
        if self.random_goals:
            self.goals = np.array([[r.uniform(-0.75, -0.45), r.uniform(0.35, 0.75)],
                                   [r.uniform(0.45, 0.75), r.uniform(0.35, 0.75)]])
        else:
            self.goals = np.array([[-0.6, 0.55], [0.6, 0.55]])
        self.t = 0
        return self._obs(), {"success": False}

    def step(self, action):
        a = np.asarray(action, np.float64)
        if a.shape != (2,):
            raise ValueError(f"ToyReachEnv action must have shape (2,), got {a.shape}")
        a = np.clip(a, -1.0, 1.0)
        self.p = np.clip(self.p + self.speed * a + self.noise * self.np_random.standard_normal(2), -1.0, 1.0)
        self.t += 1
        success = bool((np.linalg.norm(self.goals - self.p, axis=1) < self.radius).any())
        truncated = self.t >= self.horizon and not success
        return self._obs(), 0.0 if success else -1.0, success, truncated, {"success": success}

    # Exact-resume support: the whole env state, JSON-able.
    def get_state(self) -> dict[str, Any]:
        return {"p": self.p.tolist(), "goals": self.goals.tolist(), "t": self.t,
                "rng": self.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.p, self.goals, self.t = np.array(state["p"]), np.array(state["goals"]), int(state["t"])
        self.np_random.bit_generator.state = state["rng"]

    def render(self):
        img = np.full((96, 96, 3), 255, np.uint8)
        def px(q):
            return np.clip(((np.asarray(q) + 1) / 2 * 95).astype(int), 0, 95)
        for g in self.goals:
            x, y = px(g)
            img[95 - y - 2:95 - y + 3, x - 2:x + 3] = (0, 160, 0)
        x, y = px(self.p)
        img[95 - y - 1:95 - y + 2, x - 1:x + 2] = (200, 0, 0)
        return img


def expert_action(obs: np.ndarray, goal_idx: int, rng: np.random.Generator, noise: float, speed: float = 0.12) -> np.ndarray:
    p, g = obs[:2], obs[2 + 2 * goal_idx: 4 + 2 * goal_idx]
    a = (g - p) / speed
    a = a / max(1.0, np.abs(a).max())  # full speed until close, then proportional
    return np.clip(a + noise * rng.standard_normal(2), -1.0, 1.0).astype(np.float32)


def generate_episodes(n: int, seed: int, action_noise: float = 0.1, **env_kwargs: Any) -> list[dict]:
    """Scripted expert episodes in the flowft episode format (see flowft.data.readers.hdf5)."""
    env, rng, episodes = ToyReachEnv(**env_kwargs), np.random.default_rng(seed), []
    seeds = np.random.SeedSequence(seed).generate_state(n)
    for i in range(n):
        obs, _ = env.reset(seed=int(seeds[i]))
        goal = int(rng.integers(2))
        O, A, R, D = [], [], [], []
        done, success = False, False
        while not done:
            a = expert_action(obs, goal, rng, action_noise, env.speed)
            O.append(obs); A.append(a)
            obs, r, term, trunc, info = env.step(a)
            R.append(r); D.append(term)
            done, success = term or trunc, info["success"]
        episodes.append({"obs": {"obs": np.array(O, np.float32)}, "actions": np.array(A, np.float32),
                         "rewards": np.array(R, np.float32), "dones": np.array(D, bool), "success": success})
        episode_done(episodes[-1])
    return episodes


def env_meta() -> dict:
    return {"env_name": "toy", "obs_keys": ["obs"], "horizon": 12}
