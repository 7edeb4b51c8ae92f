"""The env-contract checker: names each item of flowft's env contract that an env breaks, one line each.

flowft reads `info["success"]` at an episode's last step, needs episodes that end (on success, or at a time limit),
clamps policy actions to [-1, 1], feeds flat float32 observations to MLPs, and evaluates on fixed reset seeds. An env
that breaks one of these does not crash: it trains on success 0.0, never clips BC, or evaluates a different episode
set each time. `check_env` probes for each; `enforce_contract` runs it when a user task is first used (registry.py).

A random-action probe cannot reach success on most tasks, so "success does not end the episode" is checked only when a
probe policy reaches success (the demo generator of an env spec re-checks it on every expert episode, envs/own.py).
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np

from flowft.errors import ConfigError

PROBE_STEPS = 1_000
"""Random-action steps within which an env without a declared time limit must end an episode."""


class Problem(NamedTuple):
    item: str
    """The contract item (`success key`, `episode end`, `action bounds`, `flat observation`, `reset(seed)`, ...)."""
    message: str
    fatal: bool = True
    """False: the run works but is worse than it should be (a warning)."""

    def __str__(self) -> str:
        return f"[{self.item}] {self.message}"


def _space_problems(env: gym.Env) -> list[Problem]:
    out, obs, act = [], env.observation_space, env.action_space
    if isinstance(obs, gym.spaces.Dict):
        out.append(Problem("flat observation", f"the observation is a Dict {list(obs.spaces)}: set obs_keys to the "
                                               "keys to use, in order (FlowftAdapter flattens them)"))
    elif not isinstance(obs, gym.spaces.Box):
        out.append(Problem("flat observation", f"the observation space is {obs}, not a Box"))
    elif len(obs.shape) != 1:
        out.append(Problem("flat observation", f"the observation has shape {obs.shape}, not (Do,): flatten it"))
    elif obs.dtype != np.float32:
        out.append(Problem("float32", f"the observation dtype is {obs.dtype}, not float32 (FlowftAdapter casts it)",
                           fatal=False))
    if not isinstance(act, gym.spaces.Box) or len(act.shape) != 1:
        out.append(Problem("action bounds", f"the action space is {act}: flowft needs a 1-D continuous Box"))
    elif not (np.all(act.low == -1.0) and np.all(act.high == 1.0)):
        lo, hi = np.unique(act.low), np.unique(act.high)
        out.append(Problem("action bounds", f"action bounds [{_fmt(lo)}, {_fmt(hi)}] are not [-1, 1] and flowft "
                                            "clamps actions to [-1, 1]: set rescale_actions (FlowftAdapter maps "
                                            "[-1, 1] to the env's bounds)"))
    return out


def _fmt(values: np.ndarray) -> str:
    return f"{values[0]:g}" if values.size == 1 else f"{values.min():g}..{values.max():g}"


def _episode_problems(env: gym.Env, seed: int, max_steps: int,
                      policy: Callable[[np.ndarray], np.ndarray] | None) -> list[Problem]:
    """One episode: the success key, the episode end, and (when success is reached) termination on success."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for t in range(1, max_steps + 1):
        action = policy(obs) if policy is not None else env.action_space.sample()
        obs, _, terminated, truncated, info = env.step(action)
        if "success" not in info:
            near = sorted(k for k in info if "success" in k.lower())
            hint = f": set success_key='{near[0]}'" if near else ": add one (a bool, True once the task is solved)"
            return [Problem("success key", f"info has no 'success' (info keys: {sorted(info)}){hint}")]
        if not isinstance(info["success"], (bool, np.bool_)):
            return [Problem("success key", f"info['success'] is {type(info['success']).__name__}, not a bool "
                                           "(FlowftAdapter makes it one)", fatal=False)]
        if bool(info["success"]) and not terminated:
            return [Problem("success ends episode", f"success at step {t} did not end the episode (terminated=False), "
                                                    "and flowft reads success at the last step only: set "
                                                    "terminate_on_success")]
        if terminated or truncated:
            return []
    return [Problem("episode end", f"no episode ended within {max_steps} steps: give the env a time limit "
                                   "(max_episode_steps)")]


def _first_obs(env: gym.Env, seed: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    return np.concatenate([np.ravel(v) for v in obs.values()]) if isinstance(obs, dict) else np.asarray(obs)


def _reset_problems(make: Callable[[], gym.Env] | None, env: gym.Env, seed: int) -> list[Problem]:
    """reset(seed) twice on one env, and once on a fresh env (when there is a factory): the same first observation."""
    firsts = [_first_obs(env, seed), _first_obs(env, seed)]
    if make is not None:
        other = make()
        try:
            firsts.append(_first_obs(other, seed))
        finally:
            other.close()
    first = firsts[0]
    same = [x.shape == first.shape and np.array_equal(first, x, equal_nan=True) for x in firsts[1:]]
    if all(same):
        return []
    where = "on the same env" if not same[0] else "on two env instances"
    return [Problem("reset(seed)", f"reset(seed={seed}) gave different first observations {where}: each evaluation "
                                   "then runs a different episode set; draw every random choice from self.np_random "
                                   "after super().reset(seed=seed)", fatal=False)]


def check_env(env_or_make: gym.Env | Callable[[], gym.Env], seed: int = 0, max_steps: int | None = None,
              policy: Callable[[np.ndarray], np.ndarray] | None = None) -> list[Problem]:
    """Every broken contract item of an env (or an env factory: then reset(seed) is also compared across two
    instances). `max_steps`: the probe length (default: the env's time limit + 1, else PROBE_STEPS); `policy`:
    obs -> action for the probe episode (default: random actions)."""
    make = env_or_make if not isinstance(env_or_make, gym.Env) else None
    env = make() if make is not None else env_or_make
    try:
        problems = _space_problems(env)
        limit = getattr(env.spec, "max_episode_steps", None) if env.spec is not None else None
        problems += _episode_problems(env, seed, max_steps or (limit + 1 if limit else PROBE_STEPS), policy)
        problems += _reset_problems(make, env, seed)
    finally:
        if make is not None:
            env.close()
    return problems


def enforce_contract(task) -> list[Problem]:
    """Check a TaskSpec's env: one ConfigError naming every fatal item, a one-line warning per other item."""
    problems = check_env(lambda: task.make(False))
    for p in problems:
        if not p.fatal:
            warnings.warn(f"task '{task.name}': {p}", stacklevel=3)
    fatal = [str(p) for p in problems if p.fatal]
    if fatal:
        raise ConfigError(f"task '{task.name}' breaks the env contract (docs/own_env.md): {'; '.join(fatal)}")
    return problems
