"""robosuite (robomimic tasks) environment family.

A gymnasium wrapper around robosuite 1.5.x that reproduces the robomimic low-dim
setting used by OGPO (``envs/robomimic_utils.py`` of the authors' code):

* observation: flat float32 concat of the robomimic low-dim keys
  (``robot0_eef_pos``, ``robot0_eef_quat``, ``robot0_gripper_qpos``, ``object``;
  plus the ``robot1_*`` keys for transport). robomimic's ``object`` is robosuite's
  ``object-state``. No normalisation.
* action: ``[-1, 1]^Da``, Panda arm(s) with the BASIC composite controller whose arm
  part is ``OSC_POSE`` (delta, +-5 cm / +-0.5 rad per unit), gripper -1 open / +1 close,
  20 Hz control.
* reward: ``r_env - 1`` in {-1, 0}; ``+success_bonus`` (5) on the first success step;
  ``terminated=True`` on success (OGPO's ``post_success_steps=0``);
  ``truncated=True`` at the task horizon (300/300/400/1000/800).
* ``hard_reset=False`` (a soft reset costs 1-3 ms instead of 130-140 ms).
* seeding: robosuite draws part of the task (Lift's cube size, Transport's hammer) when it builds
  the model, so ``reset(seed=s)`` rebuilds it from :func:`build_seed` ``(s)`` unless it is built for
  ``s`` already, then draws joint noise and placement from ``s``: an episode depends on ``s`` alone,
  whichever process built the env. Unseeded resets keep the model (one variant per env meanwhile).

robosuite is an optional dependency (``pip install 'flowft[robomimic]'``). Importing
this module never imports robosuite; constructing :class:`RobosuiteEnv` does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["TASKS", "TaskSpec", "RobosuiteEnv", "env_metadata", "require_robosuite", "build_seed", "warmup",
           "benchmark_steps_per_second"]

_INSTALL_HINT = (
    "robosuite is required for the robomimic task family (lift, can, square, tool_hang, "
    "transport). Install it with: pip install 'flowft[robomimic]' "
    "(which pins mujoco==3.3.0 and robosuite==1.5.2)."
)

# robomimic observation key -> robosuite observation key
_ROBOSUITE_KEY = {"object": "object-state"}

_SINGLE_ARM_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")
_TWO_ARM_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot1_eef_pos", "robot1_eef_quat",
                 "robot1_gripper_qpos", "object")


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one robomimic task (needs no robosuite import).

    ``obs_dim``/``action_dim`` are the values measured with robosuite 1.5.2; the env
    checks them at construction time.
    """

    task: str
    env_name: str
    horizon: int
    obs_keys: tuple[str, ...]
    robots: tuple[str, ...]
    obs_dim: int
    action_dim: int
    env_configuration: str | None = None
    control_freq: int = 20
    controller: str = "OSC_POSE"

    def env_kwargs(self) -> dict[str, Any]:
        """robosuite ``suite.make`` keyword arguments, JSON-able (controller excluded)."""
        kw: dict[str, Any] = {
            "robots": list(self.robots) if len(self.robots) > 1 else self.robots[0],
            "use_camera_obs": False,
            "use_object_obs": True,
            "reward_shaping": False,
            "reward_scale": 1.0,
            "control_freq": self.control_freq,
            "ignore_done": True,
            "hard_reset": False,
        }
        if self.env_configuration is not None:
            kw["env_configuration"] = self.env_configuration
        return kw


TASKS: dict[str, TaskSpec] = {
    "lift": TaskSpec("lift", "Lift", 300, _SINGLE_ARM_KEYS, ("Panda",), obs_dim=19, action_dim=7),
    "can": TaskSpec("can", "PickPlaceCan", 300, _SINGLE_ARM_KEYS, ("Panda",), obs_dim=23, action_dim=7),
    "square": TaskSpec("square", "NutAssemblySquare", 400, _SINGLE_ARM_KEYS, ("Panda",), obs_dim=23, action_dim=7),
    "tool_hang": TaskSpec("tool_hang", "ToolHang", 1000, _SINGLE_ARM_KEYS, ("Panda",), obs_dim=53, action_dim=7),
    "transport": TaskSpec("transport", "TwoArmTransport", 800, _TWO_ARM_KEYS, ("Panda", "Panda"), obs_dim=59,
                          action_dim=14, env_configuration="opposed"),
}


def _get_spec(task: str) -> TaskSpec:
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown robosuite task {task!r}; choose one of {sorted(TASKS)}") from None


def env_metadata(task: str) -> dict[str, Any]:
    """JSON-able env metadata for dataset files (robomimic ``env_args`` style + our fields)."""
    spec = _get_spec(task)
    try:  # version only if installed; metadata must not require robosuite
        from importlib.metadata import version

        rs_version = version("robosuite")
    except Exception:  # pragma: no cover - depends on the install
        rs_version = None
    return {
        "env_name": spec.env_name,
        "type": 1,  # robomimic EnvType.ROBOSUITE_TYPE
        "env_version": rs_version,
        "task": spec.task,
        "horizon": spec.horizon,
        "controller": spec.controller,
        "composite_controller": "BASIC",
        "control_freq": spec.control_freq,
        "obs_keys": list(spec.obs_keys),
        "obs_dim": spec.obs_dim,
        "action_dim": spec.action_dim,
        "robots": list(spec.robots),
        "reward": "r_env - 1 in {-1, 0}; +5 on the first success step; terminate on success",
        "env_kwargs": spec.env_kwargs(),
    }


# --------------------------------------------------------------------------------------
# robosuite import (lazy) and log-noise filtering
# --------------------------------------------------------------------------------------

_NOISY = (
    "private macro",
    "setup_macros",
    "robosuite_models",
    "mink-based",
    "but the robot does not have this component",
    "Loading controller configuration",
)


class _RobosuiteNoiseFilter(logging.Filter):
    """Drops robosuite's per-import / per-make boilerplate warnings (nothing else)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003
        msg = record.getMessage()
        return not any(s in msg for s in _NOISY)


_rs_logger = logging.getLogger("robosuite_logs")
if not any(isinstance(f, _RobosuiteNoiseFilter) for f in _rs_logger.filters):
    _rs_logger.addFilter(_RobosuiteNoiseFilter())


def require_robosuite():
    """Import and return the ``robosuite`` module, or raise a helpful ImportError."""
    try:
        import robosuite  # noqa: F401
        from robosuite.controllers import load_composite_controller_config  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(f"{_INSTALL_HINT} (original error: {e})") from e
    from flowft.envs.robosuite_cache import install

    install()  # seeded resets rebuild the model: reuse compiled models of identical XML (exact; robosuite_cache.py)
    return robosuite


def build_seed(seed: int) -> int:
    """robosuite's model-build seed for reset seed ``seed``: a separate SeedSequence stream, so the build
    draws (cube size) neither repeat nor shift the reset draws made from ``seed`` (placement, joint noise)."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])


def _make_robosuite_env(spec: TaskSpec, seed: int | None, render: bool, camera: str):
    suite = require_robosuite()
    from robosuite.controllers import load_composite_controller_config

    ctrl = load_composite_controller_config(controller="BASIC", robot=spec.robots[0])
    kw = spec.env_kwargs()
    kw.update(
        controller_configs=ctrl,
        has_renderer=False,
        has_offscreen_renderer=bool(render),
        render_camera=camera,
        seed=seed,
    )
    return suite.make(spec.env_name, **kw)


# --------------------------------------------------------------------------------------
# the env
# --------------------------------------------------------------------------------------


class RobosuiteEnv(gym.Env):
    """robomimic low-dim task as a gymnasium env (see module docstring for semantics).

    Args:
        task: one of ``TASKS`` (lift, can, square, tool_hang, transport).
        seed: seeds the model build and the first ``reset()`` if it is called without a seed
            (None: an unseeded build; every seeded reset rebuilds it anyway, see the module docstring).
        render: create an offscreen renderer so that :meth:`render` returns RGB frames
            (needs a working EGL or OSMesa; set ``MUJOCO_GL`` before importing robosuite).
        success_bonus: added to the reward on the first success step.
        horizon: override the task horizon (truncation length).
        render_size: (height, width) of rendered frames.
        camera: camera used by :meth:`render`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str,
        seed: int | None = None,
        render: bool = False,
        success_bonus: float = 5.0,
        horizon: int | None = None,
        render_size: tuple[int, int] = (256, 256),
        camera: str = "agentview",
    ) -> None:
        super().__init__()
        self.task_spec = _get_spec(task)
        self.task = task
        self.horizon = int(horizon if horizon is not None else self.task_spec.horizon)
        self.success_bonus = float(success_bonus)
        self.render_mode = "rgb_array" if render else None
        self.render_size = tuple(render_size)
        self.camera = camera
        self._init_seed = seed
        self._seeded_once = False
        self._built_for = seed  # the reset seed whose model variant is loaded (None: an unseeded build)

        self._env = _make_robosuite_env(self.task_spec, None if seed is None else build_seed(seed), render, camera)
        self._rs_keys = [_ROBOSUITE_KEY.get(k, k) for k in self.task_spec.obs_keys]

        self._raw_obs: dict[str, np.ndarray] = self._env.reset()
        self._key_dims = {
            k: int(np.asarray(self._raw_obs[rk]).size) for k, rk in zip(self.task_spec.obs_keys, self._rs_keys)
        }
        obs_dim = sum(self._key_dims.values())
        low, high = self._env.action_spec
        act_dim = int(np.asarray(low).shape[0])
        if obs_dim != self.task_spec.obs_dim or act_dim != self.task_spec.action_dim:
            raise RuntimeError(
                f"{task}: robosuite produced obs_dim={obs_dim}, action_dim={act_dim}; expected "
                f"{self.task_spec.obs_dim}/{self.task_spec.action_dim} (robosuite 1.5.2). "
                "Check the robosuite version."
            )
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(act_dim,), dtype=np.float32)

        self._t = 0
        self._succeeded = False
        self._ep_return = 0.0

    # ---- properties used by the scripted experts / data writers -------------------------
    @property
    def rs_env(self):
        """The underlying robosuite environment (privileged access: sim, body ids, ...)."""
        return self._env

    @property
    def obs_dim(self) -> int:
        return int(self.observation_space.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.action_space.shape[0])

    @property
    def key_dims(self) -> dict[str, int]:
        """Dimension of each observation key (robomimic names), in ``obs_keys`` order."""
        return dict(self._key_dims)

    @property
    def elapsed_steps(self) -> int:
        return self._t

    def obs_dict(self) -> dict[str, np.ndarray]:
        """The full robosuite observation dict of the current state (copies).

        Contains every robosuite observable (e.g. ``cube_pos``, ``Can_pos``,
        ``SquareNut_quat``) plus the robomimic name ``object`` for ``object-state``.
        """
        d = {k: np.array(v, copy=True) for k, v in self._raw_obs.items()}
        d["object"] = d["object-state"]
        return d

    def low_dim_obs(self) -> dict[str, np.ndarray]:
        """Current observation split per robomimic key (float32)."""
        return {
            k: np.asarray(self._raw_obs[rk], dtype=np.float32).reshape(-1).copy()
            for k, rk in zip(self.task_spec.obs_keys, self._rs_keys)
        }

    def _flat_obs(self) -> np.ndarray:
        return np.concatenate(
            [np.asarray(self._raw_obs[rk], dtype=np.float32).reshape(-1) for rk in self._rs_keys]
        )

    # ---- gymnasium API -------------------------------------------------------------------
    def _reseed(self, seed: int) -> None:
        # robosuite's objects and samplers hold a reference to env.rng, so reseed that generator
        # in place (replacing the object would leave them on the old stream).
        fresh = np.random.default_rng(seed)
        self._env.rng.bit_generator.state = fresh.bit_generator.state

    def _rebuild(self, seed: int) -> None:
        """Reload the robosuite model with its build draws taken from ``build_seed(seed)``."""
        env, old = self._env, self._env.sim
        self._reseed(build_seed(seed))
        env.hard_reset = True  # robosuite's own rebuild path: _load_model + _initialize_sim (+ observables)
        try:
            env.reset()
        finally:
            env.hard_reset = False
        if old is not env.sim and self.render_mode is not None:
            old.free()  # robosuite's default renderer frees no replaced sim; its offscreen context would linger
        self._built_for = seed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and not self._seeded_once and self._init_seed is not None:
            seed = self._init_seed
        if seed is not None:
            if int(seed) != self._built_for:
                self._rebuild(int(seed))
            self._reseed(int(seed))
        self._seeded_once = True
        self._raw_obs = self._env.reset()
        self._t = 0
        self._succeeded = False
        self._ep_return = 0.0
        return self._flat_obs(), {"success": False}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape[0] != self.action_dim:
            raise ValueError(f"action has shape {a.shape}, expected ({self.action_dim},)")
        a = np.clip(a, -1.0, 1.0)
        raw_obs, r_env, _done, _info = self._env.step(a)
        self._raw_obs = raw_obs
        self._t += 1

        success = bool(r_env > 0.5)
        reward = float(r_env) - 1.0
        terminated = False
        if success and not self._succeeded:
            reward += self.success_bonus
            self._succeeded = True
            terminated = True
        elif self._succeeded:  # stepping past termination: keep reporting it
            terminated = True
        truncated = (not terminated) and self._t >= self.horizon
        self._ep_return += reward
        info: dict[str, Any] = {"success": success}
        if terminated or truncated:
            info["episode_return"] = self._ep_return
            info["episode_length"] = self._t
        return self._flat_obs(), reward, terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("RobosuiteEnv.render() called but the env was built with render=False")
            return None
        h, w = self.render_size
        img = self._env.sim.render(width=w, height=h, camera_name=self.camera)
        return np.ascontiguousarray(img[::-1])  # MuJoCo's offscreen buffer is upside-down

    def close(self):
        env = getattr(self, "_env", None)
        if env is not None:
            try:
                env.close()
            except Exception:  # pragma: no cover
                pass
            self._env = None


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _random_steps(env: RobosuiteEnv, steps: int, rng: np.random.Generator) -> None:
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_dim))
        if term or trunc:
            env.reset()


def warmup(env: RobosuiteEnv, steps: int = 200, seed: int = 0) -> float:
    """Step ``env`` with random actions to trigger robosuite's numba JIT; then reset.

    Returns the seconds spent. The first few hundred robosuite steps of a process are
    slow; call this before timing anything.
    """
    t0 = time.perf_counter()
    env.reset(seed=seed)
    _random_steps(env, steps, np.random.default_rng(seed))
    env.reset()
    return time.perf_counter() - t0


def benchmark_steps_per_second(env: RobosuiteEnv, steps: int = 1000, seed: int = 0) -> float:
    """Random-action env steps per second (resets included) on ``env``."""
    env.reset(seed=seed)  # outside the clock: a seeded reset may rebuild the model
    t0 = time.perf_counter()
    _random_steps(env, steps, np.random.default_rng(seed))
    return steps / (time.perf_counter() - t0)
