"""Franka Kitchen (gymnasium-robotics ``FrankaKitchen-v1``) with sparse −1/0 reward, and scripted
demonstration generators in the spirit of D4RL's kitchen-{complete,partial,mixed}.

Environment semantics (``KitchenEnv``):

* Base env: ``FrankaKitchen-v1`` (unwrapped) with ``tasks_to_complete=list(tasks)``,
  ``terminate_on_tasks_completed=True``; our own step counter truncates at ``max_episode_steps``
  (default 600, as in OGPO; gymnasium's registered default is 280).
* Observation (float32, fixed key order, OGPO/Minari compatible):
  ``concat(observation[59], desired_goal[k] for k in sorted(tasks), achieved_goal[k] for k in
  sorted(tasks))``. Goal sizes: microwave 1, kettle 7, light switch 2, slide cabinet 1, hinge
  cabinet 2, burners 2. The default 4 tasks give 59 + 11 + 11 = 81 dims.
* Action: ``Box(-1, 1, (9,))`` float32, joint velocities (7 arm + 2 fingers), as in the base env.
* A task counts as done once its joint state came within 0.3 (L2) of the goal at some step of the
  episode (gymnasium-robotics semantics, ``episode_task_completions``). ``info["tasks_done"]``
  is the number of listed tasks done so far; ``info["success"]`` is true when all listed tasks are
  done. Reward is ``-1`` per step and ``0`` on the success step, which terminates the episode.

gymnasium-robotics is optional: importing this module never fails, constructing the env raises an
``ImportError`` naming the ``flowft[kitchen]`` extra.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import gymnasium
import numpy as np
from tqdm import tqdm

from flowft.envs.demo_progress import episode_done
from flowft.envs.gym_robotics import first_reset_seed, import_gym_robotics
from flowft.envs.rollout import record_episode

DEFAULT_TASKS = ("microwave", "kettle", "light switch", "slide cabinet")
GOAL_DIMS = {
    "bottom burner": 2,
    "top burner": 2,
    "light switch": 2,
    "slide cabinet": 1,
    "hinge cabinet": 2,
    "microwave": 1,
    "kettle": 7,
}
# Target tasks of each generated dataset (same as Minari D4RL/kitchen/*-v2).
DATASET_TASKS = {
    "complete": ("microwave", "kettle", "light switch", "slide cabinet"),
    "partial": ("microwave", "kettle", "light switch", "slide cabinet"),
    "mixed": ("microwave", "kettle", "bottom burner", "light switch"),
}
ENV_ID = "FrankaKitchen-v1"

_INSTALL_HINT = (
    "The Franka Kitchen environment needs gymnasium-robotics and mujoco: "
    "pip install 'flowft[kitchen]' (gymnasium-robotics==1.4.2, mujoco==3.3.0)."
)


def _make_base(tasks, render: bool):
    import_gym_robotics(_INSTALL_HINT)
    kwargs: dict[str, Any] = dict(tasks_to_complete=list(tasks), terminate_on_tasks_completed=True)
    if render:
        kwargs.update(render_mode="rgb_array", width=256, height=256)
    return gymnasium.make(ENV_ID, **kwargs).unwrapped


def obs_dim(tasks) -> int:
    return 59 + 2 * sum(GOAL_DIMS[t] for t in tasks)


class KitchenEnv(gymnasium.Env):
    """Sparse −1/0 multi-task kitchen with terminate-on-success (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 12}

    def __init__(
        self,
        tasks: tuple[str, ...] = DEFAULT_TASKS,
        seed: int | None = None,
        render: bool = False,
        max_episode_steps: int = 600,
    ):
        super().__init__()
        tasks = tuple(tasks)
        for t in tasks:
            if t not in GOAL_DIMS:
                raise ValueError(f"unknown kitchen task {t!r}; expected a subset of {tuple(GOAL_DIMS)}")
        if len(set(tasks)) != len(tasks) or not tasks:
            raise ValueError(f"tasks must be non-empty and unique, got {tasks}")
        self.tasks = tasks
        self._keys = tuple(sorted(tasks))
        self._env = _make_base(tasks, render)
        self.render_mode = "rgb_array" if render else None
        self.max_episode_steps = int(max_episode_steps)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim(tasks),), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (9,), np.float32)
        self._seed = seed
        self._seeded = False
        self._t = 0

    @property
    def base(self):
        """The gymnasium-robotics ``KitchenEnv`` (for privileged-state experts)."""
        return self._env

    def _flat(self, o: dict) -> np.ndarray:
        dg = [np.atleast_1d(o["desired_goal"][k]) for k in self._keys]
        ag = [np.atleast_1d(o["achieved_goal"][k]) for k in self._keys]
        return np.concatenate([o["observation"], *dg, *ag]).astype(np.float32)

    def _done_count(self) -> int:
        return sum(t in self._env.episode_task_completions for t in self.tasks)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        seed = first_reset_seed(self, seed)
        o, _ = self._env.reset(seed=seed)
        self._t = 0
        return self._flat(o), {"success": False, "tasks_done": 0}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(9), -1.0, 1.0)
        o, _, _, _, info = self._env.step(a)
        self._t += 1
        done = self._done_count()
        success = done == len(self.tasks)
        reward = 0.0 if success else -1.0
        truncated = (not success) and self._t >= self.max_episode_steps
        return self._flat(o), reward, success, truncated, {
            "success": success,
            "tasks_done": done,
            "completed": list(info.get("episode_task_completions", [])),
        }

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._env.render()

    def close(self):
        self._env.close()


# ---------------------------------------------------------------------------------------------
# Demonstrations
# ---------------------------------------------------------------------------------------------

_PARTIAL_OTHER = [  # task sequences that do NOT solve the partial/complete target set
    ("microwave", "light switch", "slide cabinet"),
    ("microwave", "bottom burner", "light switch"),
    ("kettle", "bottom burner", "light switch"),
    ("microwave", "kettle", "bottom burner"),
    ("kettle", "light switch", "slide cabinet"),
    ("microwave", "kettle", "slide cabinet"),
    ("bottom burner", "light switch", "slide cabinet"),
]
_MIXED = [  # none contains all of microwave, kettle, bottom burner, light switch
    ("microwave", "kettle", "light switch", "slide cabinet"),
    ("microwave", "kettle", "slide cabinet"),
    ("microwave", "bottom burner", "light switch", "slide cabinet"),
    ("kettle", "bottom burner", "light switch", "slide cabinet"),
    ("microwave", "kettle", "bottom burner", "slide cabinet"),
    ("microwave", "light switch", "slide cabinet"),
    ("kettle", "bottom burner", "slide cabinet"),
]


def task_plan(dataset: str, i: int, rng: np.random.Generator) -> tuple[str, ...]:
    """The sequence of subtasks the expert performs in episode ``i`` of ``dataset``."""
    if dataset == "complete":
        return DATASET_TASKS["complete"]
    if dataset == "partial":
        if i % 2 == 0:  # half of the episodes attempt the full target chain
            return DATASET_TASKS["partial"]
        return _PARTIAL_OTHER[int(rng.integers(len(_PARTIAL_OTHER)))]
    if dataset == "mixed":
        return _MIXED[int(rng.integers(len(_MIXED)))]
    raise ValueError(f"dataset must be 'complete', 'partial' or 'mixed', got {dataset!r}")


def rollout_expert(
    env: KitchenEnv,
    plan: tuple[str, ...],
    seed: int,
    action_noise: float = 0.0,
    jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> dict:
    """One scripted episode in ``env`` performing ``plan``; returns the episode dict."""
    from flowft.envs.kitchen_experts import KitchenController, chain

    rng = rng if rng is not None else np.random.default_rng(seed)
    env.reset(seed=seed)  # the controller reads the initial scene; record_episode resets to the same state
    ctl = KitchenController(env.base, rng=rng)
    gen = chain(ctl, plan, jitter=jitter)
    episode, info = record_episode(env, lambda o: next(gen), seed, action_noise, rng)
    return {**episode, "tasks_done": int(info["tasks_done"]), "completed": list(info.get("completed", [])),
            "plan": list(plan)}


def generate_episodes(
    n: int,
    seed: int,
    dataset: Literal["complete", "partial", "mixed"] = "complete",
    action_noise: float = 0.0,
    progress: bool = False,
    jitter: float = 0.01,
    max_episode_steps: int = 600,
    tasks: tuple[str, ...] | None = None,
) -> list[dict]:
    """Scripted-IK kitchen demonstrations.

    * ``complete``: every episode attempts microwave -> kettle -> light switch -> slide cabinet.
    * ``partial``: even-numbered episodes attempt that chain, odd ones a 3-task sequence that
      does not contain all four targets (mixing in the bottom burner).
    * ``mixed``: target tasks microwave, kettle, bottom burner, light switch (as in D4RL); every
      episode performs a sequence that omits at least one of them, so no episode solves the set.

    The env's target set (reward / ``success``) is ``tasks`` or ``DATASET_TASKS[dataset]``.
    ``action_noise`` is the std of Gaussian noise on the expert action (before clipping; the
    executed action is recorded); ``jitter`` (m) randomises the grasp/contact points per episode.
    Episode dicts are as in :func:`flowft.envs.adroit.generate_episodes`, plus ``tasks_done``,
    ``completed`` and ``plan``. Failed episodes are included.
    """
    target = tuple(tasks) if tasks is not None else DATASET_TASKS[dataset]
    env = KitchenEnv(target, max_episode_steps=max_episode_steps)
    rng = np.random.default_rng(seed)
    it = tqdm(range(n), desc=f"kitchen-{dataset} demos", disable=not progress)
    t0 = time.perf_counter()
    eps = []
    for i in it:
        plan = task_plan(dataset, i, rng)
        ep_seed = int(rng.integers(0, 2**31 - 1))
        eps.append(rollout_expert(env, plan, ep_seed, action_noise, jitter, rng))
        episode_done(eps[-1])
    env.close()
    if progress:
        sr = np.mean([e["success"] for e in eps]) if eps else float("nan")
        print(f"kitchen-{dataset}: {n} episodes, success {sr:.2f}, {time.perf_counter() - t0:.1f} s")
    return eps


def env_meta(tasks: tuple[str, ...] = DEFAULT_TASKS, max_episode_steps: int = 600,
             dataset: str | None = None) -> dict:
    """JSON-able metadata of ``KitchenEnv(tasks)`` (``dataset`` selects ``DATASET_TASKS``)."""
    if dataset is not None:
        tasks = DATASET_TASKS[dataset]
    tasks = tuple(tasks)
    return {
        "family": "kitchen",
        "env_id": ENV_ID,
        "tasks": list(tasks),
        "dataset": dataset,
        "max_episode_steps": int(max_episode_steps),
        "obs_keys": ["obs"],
        "obs_layout": ["observation[59]"]
        + [f"desired_goal/{k}[{GOAL_DIMS[k]}]" for k in sorted(tasks)]
        + [f"achieved_goal/{k}[{GOAL_DIMS[k]}]" for k in sorted(tasks)],
        "obs_dim": obs_dim(tasks),
        "action_dim": 9,
        "action_low": -1.0,
        "action_high": 1.0,
        "reward": "-1 per step, 0 when all tasks are done; terminate on success",
        "success_threshold": 0.3,
    }
