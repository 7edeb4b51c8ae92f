"""Adroit hand tasks (gymnasium-robotics ``AdroitHand*-v1``) and DAPG expert demonstrations.

Environment semantics (``AdroitEnv``):

* Base env: gymnasium-robotics ``AdroitHand{Door,Hammer,Pen,Relocate}Sparse-v1`` (the variant OGPO
  uses), unwrapped: we keep our own step counter instead of gymnasium's ``TimeLimit``.
* Reward: ``-1`` per step, ``0`` on the step where ``info["success"]`` is true; the episode
  **terminates on that step**. Success is exactly gymnasium-robotics' ``info["success"]``
  (door: hinge angle >= 1.35 rad; hammer: nail within 1 cm of its goal; pen: position within
  7.5 cm and orientation cosine > 0.95; relocate: ball within 10 cm of the target).
* Truncation at the registered 200 steps (all four tasks).
* Observation: the base env's flat state vector, cast to float32 (door 39, hammer 46, pen 45,
  relocate 39). Action: ``Box(-1, 1, (Da,))`` float32 (door 28, hammer 26, pen 24, relocate 30).
  gymnasium-robotics already normalises the actuator ranges to [-1, 1] (``act_mean + a * act_rng``
  inside ``step``), so no rescaling is done here; actions are clipped to [-1, 1].

Demonstrations (``generate_episodes``) roll out the original DAPG expert policies of
Rajeswaran et al. (RSS 2018), shipped as numpy weights in ``flowft/assets/adroit_dapg``
(Apache-2.0; see the LICENSE and README.md there).

gymnasium-robotics is an optional dependency: importing this module never fails, constructing the
env raises an ``ImportError`` that names the ``flowft[adroit]`` extra.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium
import numpy as np
from tqdm import tqdm

from flowft.envs.gym_robotics import first_reset_seed, import_gym_robotics
from flowft.envs.rollout import record_episode

ADROIT_TASKS = ("door", "hammer", "pen", "relocate")

_ENV_IDS = {
    "door": "AdroitHandDoorSparse-v1",
    "hammer": "AdroitHandHammerSparse-v1",
    "pen": "AdroitHandPenSparse-v1",
    "relocate": "AdroitHandRelocateSparse-v1",
}
_MAX_STEPS = {"door": 200, "hammer": 200, "pen": 200, "relocate": 200}
_DIMS = {"door": (39, 28), "hammer": (46, 26), "pen": (45, 24), "relocate": (39, 30)}

_INSTALL_HINT = (
    "The Adroit environments need gymnasium-robotics and mujoco: pip install 'flowft[adroit]' "
    "(gymnasium-robotics==1.4.2, mujoco==3.3.0)."
)


def _check_task(task: str) -> str:
    if task not in ADROIT_TASKS:
        raise ValueError(f"unknown Adroit task {task!r}; expected one of {ADROIT_TASKS}")
    return task


def _register_gym_robotics() -> None:
    import_gym_robotics(_INSTALL_HINT)


class AdroitEnv(gymnasium.Env):
    """Sparse −1/0 Adroit task with terminate-on-success (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str,
        seed: int | None = None,
        render: bool = False,
        max_episode_steps: int | None = None,
    ):
        super().__init__()
        self.task = _check_task(task)
        _register_gym_robotics()
        kwargs: dict[str, Any] = {}
        if render:
            kwargs.update(render_mode="rgb_array", width=256, height=256)
        self._env = gymnasium.make(_ENV_IDS[task], **kwargs).unwrapped
        self.render_mode = "rgb_array" if render else None
        self.max_episode_steps = int(max_episode_steps or _MAX_STEPS[task])
        do, da = _DIMS[task]
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (do,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (da,), np.float32)
        self._seed = seed
        self._seeded = False
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        seed = first_reset_seed(self, seed)
        obs, _ = self._env.reset(seed=seed, options=options)
        self._t = 0
        return np.asarray(obs, dtype=np.float32), {"success": False}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        obs, _, _, _, info = self._env.step(a)
        self._t += 1
        success = bool(info["success"])
        reward = 0.0 if success else -1.0
        terminated = success
        truncated = (not terminated) and self._t >= self.max_episode_steps
        return np.asarray(obs, dtype=np.float32), reward, terminated, truncated, {"success": success}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._env.render()

    def close(self):
        self._env.close()

    # handy for scripted experts / tests
    @property
    def unwrapped_base(self):
        return self._env


# ---------------------------------------------------------------------------------------------
# DAPG experts (numpy forward pass; weights shipped as npz, loaded with allow_pickle=False)
# ---------------------------------------------------------------------------------------------


def load_expert(task: str) -> dict[str, np.ndarray]:
    """Load the DAPG expert weights for ``task`` from the package data."""
    _check_task(task)
    name = f"{task}.npz"
    try:
        from importlib.resources import files

        with files("flowft.assets.adroit_dapg").joinpath(name).open("rb") as f:
            d = np.load(f, allow_pickle=False)
            return {k: np.asarray(d[k]) for k in d.files}
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        from pathlib import Path

        path = Path(__file__).resolve().parent.parent / "assets" / "adroit_dapg" / name
        with np.load(path, allow_pickle=False) as d:
            return {k: np.asarray(d[k]) for k in d.files}


def expert_action(params: dict[str, np.ndarray], obs: np.ndarray) -> np.ndarray:
    """Deterministic (mean) DAPG action, clipped to [-1, 1]. Works on [Do] or [B, Do] obs."""
    h = (np.asarray(obs, np.float64) - params["in_shift"]) / (params["in_scale"] + 1e-8)
    n = int(params["n_layers"])
    for i in range(n):
        h = h @ params[f"W{i}"].T.astype(np.float64) + params[f"b{i}"]
        if i < n - 1:
            h = np.tanh(h)
    a = h * params["out_scale"] + params["out_shift"]
    return np.clip(a, -1.0, 1.0)


def generate_episodes(
    task: str,
    n: int,
    seed: int,
    action_noise: float = 0.0,
    progress: bool = False,
) -> list[dict]:
    """Roll out the DAPG expert for ``n`` episodes of ``AdroitEnv(task)``.

    ``action_noise`` is the std of i.i.d. Gaussian noise added to the expert mean action (in the
    normalised [-1, 1] units) before clipping; the *executed* (noisy, clipped) action is recorded.
    Episode ``i`` resets with a seed drawn from ``np.random.default_rng(seed)``; runs are
    reproducible for a given ``(task, n, seed, action_noise)``.

    Returns a list of episode dicts ``{"obs": {"obs": [T, Do] f32}, "actions": [T, Da] f32,
    "rewards": [T] f32, "dones": [T] bool, "success": bool}``; ``obs[t]`` is the observation
    before action ``t``; ``dones[t]`` is ``terminated or truncated`` of step ``t``. Failed
    episodes are included (callers filter on ``"success"``).
    """
    params = load_expert(task)
    env = AdroitEnv(task)
    rng = np.random.default_rng(seed)
    episodes = []
    it = tqdm(range(n), desc=f"adroit-{task} demos", disable=not progress)
    t0 = time.perf_counter()
    for _ in it:
        ep_seed = int(rng.integers(0, 2**31 - 1))
        episodes.append(record_episode(env, lambda o: expert_action(params, o), ep_seed, action_noise, rng)[0])
    env.close()
    if progress:
        dt = time.perf_counter() - t0
        sr = np.mean([e["success"] for e in episodes]) if episodes else float("nan")
        print(f"adroit-{task}: {n} episodes, success {sr:.2f}, {dt:.1f} s")
    return episodes


def env_meta(task: str) -> dict:
    """JSON-able metadata describing the Adroit task as built by ``AdroitEnv``."""
    _check_task(task)
    do, da = _DIMS[task]
    return {
        "family": "adroit",
        "task": task,
        "env_id": _ENV_IDS[task],
        "max_episode_steps": _MAX_STEPS[task],
        "obs_keys": ["obs"],
        "obs_dim": do,
        "action_dim": da,
        "action_low": -1.0,
        "action_high": 1.0,
        "reward": "-1 per step, 0 on the success step; terminate on success",
        "success": "gymnasium-robotics info['success']",
        "expert": "DAPG (Rajeswaran et al. 2018), Apache-2.0, flowft/assets/adroit_dapg",
    }
