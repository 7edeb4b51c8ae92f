"""Adroit hand tasks (gymnasium-robotics ``AdroitHand*-v1``) and DAPG expert demonstrations.

Two task definitions share one env class (``AdroitEnv``); the task name picks the definition.

``door``, ``hammer``, ``pen``, ``relocate`` (default): **the OGPO authors' definition**
(OGPO_public ``envs/gymnasium_robotics_utils.py``: ``gymnasium.make("AdroitHand<Task>Sparse-v1")`` and nothing else):

* Reward: gymnasium-robotics' sparse reward, ``+10`` on every step where ``info["success"]`` is true and ``-0.1``
  otherwise.
* **No termination** (gymnasium-robotics never terminates these envs); truncation at the registered 200 steps.
* Episode success = ``info["success"]`` **at the last step** (step 200), which is what the authors' evaluation and
  success buffer read (``ogpo/utils/evaluation.py`` takes the final step's info; ``online_rl_runner.py`` tags an
  episode with the ``info["success"]`` of its ``done`` step). A success that is lost before step 200 does not count.
  ``info["success"]`` keeps gymnasium-robotics' per-step meaning on every step, so the last step's value is the
  episode's success for the shared collector / evaluation / BC clip check.

``door-terminate``, ``hammer-terminate``, ``pen-terminate``, ``relocate-terminate``: **flowft's earlier definition**
(what ``door`` etc. meant before; the committed door results under ``docs/results/`` were made with it):

* Reward ``-1`` per step, ``0`` on the step where ``info["success"]`` is true; the episode **terminates on that
  step**, so episode success = success at the last step here as well. Truncation at 200 steps.

Both definitions:

* Base env: gymnasium-robotics ``AdroitHand{Door,Hammer,Pen,Relocate}Sparse-v1``, unwrapped: we keep our own step
  counter instead of gymnasium's ``TimeLimit``. Success is exactly gymnasium-robotics' ``info["success"]``
  (door: hinge angle >= 1.35 rad; hammer: nail within 1 cm of its goal; pen: position within 7.5 cm and orientation
  cosine > 0.95; relocate: ball within 10 cm of the target).
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

from flowft.envs.demo_progress import episode_done
from flowft.envs.gym_robotics import first_reset_seed, import_gym_robotics
from flowft.envs.rollout import record_episode

ADROIT_TASKS = ("door", "hammer", "pen", "relocate")
"""The default task names: the OGPO authors' definition (+10 / -0.1, no termination, success at step 200)."""
TERMINATE_SUFFIX = "-terminate"
ADROIT_TERMINATE_TASKS = tuple(t + TERMINATE_SUFFIX for t in ADROIT_TASKS)
"""flowft's earlier definition under its own names: -1 / 0 reward, the episode terminates on the success step."""
ADROIT_ALL_TASKS = ADROIT_TASKS + ADROIT_TERMINATE_TASKS

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
    if task not in ADROIT_ALL_TASKS:
        raise ValueError(f"unknown Adroit task {task!r}; expected one of {ADROIT_ALL_TASKS}")
    return task


def base_task(task: str) -> str:
    """The gymnasium-robotics task behind a task name: ``"door-terminate"`` -> ``"door"``."""
    _check_task(task)
    return task[: -len(TERMINATE_SUFFIX)] if task.endswith(TERMINATE_SUFFIX) else task


def terminates_on_success(task: str) -> bool:
    """True for the ``-terminate`` names (-1 / 0 reward, episode ends on the success step)."""
    return _check_task(task).endswith(TERMINATE_SUFFIX)


def _register_gym_robotics() -> None:
    import_gym_robotics(_INSTALL_HINT)


class AdroitEnv(gymnasium.Env):
    """One Adroit task; ``task`` is a name from ``ADROIT_TASKS`` (the authors' +10 / -0.1 definition, no
    termination) or ``ADROIT_TERMINATE_TASKS`` (-1 / 0, terminate on success). See the module docstring."""

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
        self.base_task = base_task(task)
        self.terminate_on_success = terminates_on_success(task)
        _register_gym_robotics()
        kwargs: dict[str, Any] = {}
        if render:
            kwargs.update(render_mode="rgb_array", width=256, height=256)
        self._env = gymnasium.make(_ENV_IDS[self.base_task], **kwargs).unwrapped
        self.render_mode = "rgb_array" if render else None
        self.max_episode_steps = int(max_episode_steps or _MAX_STEPS[self.base_task])
        do, da = _DIMS[self.base_task]
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
        obs, base_reward, _, _, info = self._env.step(a)
        self._t += 1
        success = bool(info["success"])
        if self.terminate_on_success:
            reward, terminated = (0.0 if success else -1.0), success
        else:  # the authors' definition: gymnasium-robotics' sparse reward (+10 / -0.1), never terminated
            reward, terminated = float(base_reward), False
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
    """Load the DAPG expert weights for ``task`` (either definition's name) from the package data."""
    name = f"{base_task(task)}.npz"
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
    before action ``t``; ``dones[t]`` is ``terminated or truncated`` of step ``t``. ``"success"`` is the
    last step's ``info["success"]``, the episode success of both definitions (with the default, non-terminating
    definition every episode runs the full 200 steps, and a success lost before the end is a failure). Failed
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
        episode, last_info = record_episode(env, lambda o: expert_action(params, o), ep_seed, action_noise, rng)
        episode["success"] = bool(last_info["success"])  # success at the last step (record_episode's is "any step")
        episodes.append(episode)
        episode_done(episode)
    env.close()
    if progress:
        dt = time.perf_counter() - t0
        sr = np.mean([e["success"] for e in episodes]) if episodes else float("nan")
        print(f"adroit-{task}: {n} episodes, success {sr:.2f}, {dt:.1f} s")
    return episodes


def env_meta(task: str) -> dict:
    """JSON-able metadata describing the Adroit task as built by ``AdroitEnv``."""
    base = base_task(task)
    do, da = _DIMS[base]
    if terminates_on_success(task):
        definition = {"definition": "terminate", "reward": "-1 per step, 0 on the success step; terminate on success",
                      "episode_success": "info['success'] at the last step (the success step terminates)"}
    else:
        definition = {"definition": "authors", "reward": "+10 on success steps, -0.1 otherwise; no termination",
                      "episode_success": "info['success'] at the last step (step max_episode_steps)"}
    return {
        "family": "adroit",
        "task": task,
        "env_id": _ENV_IDS[base],
        "max_episode_steps": _MAX_STEPS[base],
        "obs_keys": ["obs"],
        "obs_dim": do,
        "action_dim": da,
        "action_low": -1.0,
        "action_high": 1.0,
        **definition,
        "success": "gymnasium-robotics info['success']",
        "expert": "DAPG (Rajeswaran et al. 2018), Apache-2.0, flowft/assets/adroit_dapg",
    }
