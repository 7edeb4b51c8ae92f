"""Your own environment by name: env specs, which every `--task` / `--env` / `task=` accepts besides built-in names.

An env spec is a string, recorded as the task name in a run's config.json, so eval / resume / load_policy rebuild
the env from it with no launcher script:

  ENTRY           a gymnasium id (`Pendulum-v1`), `package:EnvId` (gymnasium imports the package first, e.g.
                  `gymnasium_robotics:FetchPush-v4`), `module:factory` (a callable returning an env; called with the
                  spec's kwargs, plus render_mode="rgb_array" when flowft renders), or `module:TASK` (a TaskSpec object
                  in that module: full control, used as is). The module is imported from the installed packages or
                  from the directory flowft is started in.
  {JSON object}   {"env": ENTRY, ...options}; the options (all optional) are
                    kwargs              JSON object passed to gym.make / the factory
                    max_episode_steps   time limit (gym.make's argument; a TimeLimit around a factory's env)
                    success_key, terminate_on_success, sparse_reward, obs_keys, rescale_actions
                                        FlowftAdapter options (envs/adapter.py)
                    expert              `module:callable`, obs -> action in [-1, 1]: `flowft demos` records it (an
                                        object with a reset() method is reset before each episode)
                    chunk_len, gamma, denoise_steps, vectorization ("sync" | "async"), simulator, check
                                        TaskSpec fields (envs/taskspec.py); defaults 4, 0.99, 10, sync, true, true

`env_task(entry, **options)` writes the canonical spec string from Python.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from flowft.envs.adapter import ADAPTER_OPTIONS, FlowftAdapter
from flowft.envs.demo_progress import episode_done
from flowft.envs.taskspec import TaskSpec
from flowft.errors import ConfigError, DataError

_TYPES: dict[str, tuple] = {
    "env": (str,), "kwargs": (dict,), "max_episode_steps": (int,), "expert": (str,), "success_key": (str,),
    "terminate_on_success": (bool,), "sparse_reward": (bool,), "obs_keys": (list,), "rescale_actions": (bool,),
    "chunk_len": (int,), "gamma": (float, int), "denoise_steps": (int,), "vectorization": (str,),
    "simulator": (bool,), "check": (bool,),
}
_TASK_FIELDS = ("chunk_len", "gamma", "denoise_steps", "vectorization", "simulator", "check")


def is_env_spec(name: str) -> bool:
    """Whether a task name that is not registered should be read as an env spec."""
    if name.lstrip().startswith("{") or ":" in name:
        return True
    import gymnasium as gym

    return name in gym.registry


def parse_spec(text: str) -> dict:
    """The spec's options as a dict with "env"; a ConfigError names the first bad part."""
    if not text.lstrip().startswith("{"):
        return {"env": text}
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"env spec {text!r}: not valid JSON ({err})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("env"), str):
        raise ConfigError(f"env spec {text!r}: a JSON spec must be an object with an \"env\" string")
    for key, value in spec.items():
        if key not in _TYPES:
            raise ConfigError(f"env spec: unknown option '{key}' (options: {', '.join(_TYPES)})")
        if not isinstance(value, _TYPES[key]) or (isinstance(value, bool) and bool not in _TYPES[key]):
            raise ConfigError(f"env spec option '{key}' must be {' or '.join(t.__name__ for t in _TYPES[key])}, "
                              f"got {value!r}")
    if spec.get("vectorization", "sync") not in ("sync", "async"):
        raise ConfigError(f"env spec option 'vectorization' must be sync or async, got {spec['vectorization']!r}")
    return spec


def env_task(env: str, **options: Any) -> str:
    """The canonical spec string of ENTRY + options (validated), usable wherever a task name is:
    env_task("gymnasium_robotics:FetchPush-v4", success_key="is_success", terminate_on_success=True)."""
    if "obs_keys" in options and options["obs_keys"] is not None:
        options["obs_keys"] = list(options["obs_keys"])
    spec = {"env": env, **{k: v for k, v in options.items() if v is not None}}
    text = json.dumps(spec, sort_keys=True) if len(spec) > 1 else env
    parse_spec(text)
    return text


def _import(entry: str) -> tuple[Any, str]:
    """(module, attribute name) of `module:attr`, importing from the working directory too (as `python -m` does)."""
    module_name, _, attr = entry.partition(":")
    try:
        return importlib.import_module(module_name), attr
    except ModuleNotFoundError as err:
        if err.name != module_name.split(".")[0] or os.getcwd() in sys.path:
            raise ConfigError(f"env spec '{entry}': cannot import {module_name} ({err})") from None
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name), attr
    except ModuleNotFoundError as err:
        raise ConfigError(f"env spec '{entry}': cannot import {module_name} ({err}): install it or start flowft from "
                          "the directory that holds it") from None


def resolve(entry: str) -> tuple[str, Any]:
    """("gym", id) | ("factory", callable) | ("task", TaskSpec) for an ENTRY."""
    import gymnasium as gym

    if ":" not in entry:
        if entry not in gym.registry:
            raise ConfigError(f"env spec '{entry}': not a gymnasium id (an id from a plugin package is written "
                              "'package:EnvId', e.g. gymnasium_robotics:FetchPush-v4)")
        return "gym", entry
    module, attr = _import(entry)
    obj = getattr(module, attr, None)
    if isinstance(obj, TaskSpec):
        return "task", obj
    if callable(obj):
        return "factory", obj
    if attr in gym.registry:  # importing the module registered the id
        return "gym", attr
    raise ConfigError(f"env spec '{entry}': {module.__name__} has no callable, TaskSpec or gymnasium id '{attr}'")


@dataclass(frozen=True)
class SpecEnvFactory:
    """make(render) of an env spec; a picklable object, so AsyncVectorEnv workers rebuild the env themselves."""

    spec: dict

    def __call__(self, render: bool = False):
        import gymnasium as gym

        s, kwargs = self.spec, dict(self.spec.get("kwargs", {}))
        if render:
            kwargs["render_mode"] = "rgb_array"
        kind, target = resolve(s["env"])
        if kind == "gym":
            if "max_episode_steps" in s:
                kwargs["max_episode_steps"] = s["max_episode_steps"]
            env = gym.make(target, **kwargs)
        else:
            env = target(**kwargs)
            if "max_episode_steps" in s:
                env = gym.wrappers.TimeLimit(env, s["max_episode_steps"])
        return FlowftAdapter(env, **{k: s[k] for k in ADAPTER_OPTIONS if k in s})


def task_from_spec(text: str) -> TaskSpec:
    """The TaskSpec an env spec string stands for, named by the string itself."""
    spec = parse_spec(text)
    kind, target = resolve(spec["env"])
    if kind == "task":
        if len(spec) > 1:
            raise ConfigError(f"env spec '{spec['env']}' is a TaskSpec: it takes no options (set them on the TaskSpec)")
        return dataclasses.replace(target, name=text)
    make = SpecEnvFactory(spec)
    generate = expert_demos(make, spec["expert"], name=text) if "expert" in spec else None
    horizon = spec.get("max_episode_steps")
    meta = {"env_name": text, "obs_keys": ["obs"], **({"horizon": horizon} if horizon else {})}
    return TaskSpec(name=text, make=make, generate=generate, meta=lambda: dict(meta),
                    **{k: spec[k] for k in _TASK_FIELDS if k in spec})


def expert_demos(make: Callable[[bool], Any], expert: str | Callable, name: str = "") -> Callable[..., list[dict]]:
    """generate(n, seed, action_noise) recording `expert` (obs -> action in [-1, 1], or `module:callable`) on the
    envs `make(False)` builds, in the flowft episode format (data/readers/hdf5.py)."""

    def generate(n: int, seed: int, action_noise: float = 0.1, **_) -> list[dict]:
        policy = expert
        if isinstance(policy, str):
            module, attr = _import(policy)
            policy = getattr(module, attr)
        env, rng = make(False), np.random.default_rng(seed)
        seeds = np.random.SeedSequence(seed).generate_state(n)
        episodes = []
        try:
            for s in seeds:
                episodes.append(_expert_episode(env, policy, int(s), action_noise, rng, name))
                episode_done(episodes[-1])
            return episodes
        finally:
            env.close()

    return generate


def _expert_episode(env, expert, seed: int, noise: float, rng: np.random.Generator, name: str) -> dict:
    """One episode; obs[t] is the observation before actions[t] (the executed, clipped action)."""
    if hasattr(expert, "reset"):
        expert.reset()
    obs, _ = env.reset(seed=seed)
    O, A, R, D = [], [], [], []
    while True:
        a = np.asarray(expert(obs), np.float64)
        a = np.clip(a + noise * rng.standard_normal(a.shape) if noise > 0 else a, -1.0, 1.0).astype(np.float32)
        O.append(np.asarray(obs, np.float32))
        A.append(a)
        obs, r, term, trunc, info = env.step(a)
        R.append(r)
        D.append(bool(term or trunc))
        if info["success"] and not term:
            raise DataError(f"task '{name}': [success ends episode] the expert succeeded at step {len(A)} but the "
                            "episode went on: set terminate_on_success (flowft reads success at the last step)")
        if term or trunc:
            break
    return {"obs": {"obs": np.stack(O)}, "actions": np.stack(A), "rewards": np.asarray(R, np.float32),
            "dones": np.asarray(D, bool), "success": bool(info["success"])}
