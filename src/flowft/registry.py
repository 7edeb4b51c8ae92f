"""The one place where names map to code: tasks (envs + demo generators) and algorithms.

Simulator families register lazily (their modules import the simulator only when an env is built), so the
registry itself never needs robosuite or gymnasium-robotics. The built-in tasks come from envs/catalog.py, which
does not import this module (no import circle). A task name that is not registered is read as an env spec (a
gymnasium id, `module:callable`, or a JSON object; envs/own.py), so a run's config.json, which records the name,
rebuilds the user's env in eval / resume / load_policy without a launcher script.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from flowft.envs.taskspec import TaskSpec
from flowft.errors import ConfigError

__all__ = ["TaskSpec", "AlgoSpec", "register_task", "get_task", "make_env", "task_slug", "register_algorithm",
           "get_algorithm", "task_names", "algorithm_names", "UnknownTaskError"]


@dataclass(frozen=True)
class AlgoSpec:
    cls: type
    """Algorithm subclass (algos/base.py)."""
    cfg_cls: type
    """Its frozen config dataclass."""
    make_config: Callable[[str, str], Any]
    """make_config(task, size) -> the preset's config object."""
    doc: str = ""
    headline: Literal["ode", "sde", "bon"] = "ode"
    """The evaluation sampler that is this method's deployed policy (the one reports compare): `ode` for methods
    whose actor alone is the policy, `bon` where the critic picks among samples at test time (QC, EXPO)."""
    run_overrides: Callable[[str, str], dict] | None = None
    """run_overrides(task, size) -> RunConfig fields this method's presets change (e.g. DPPO's many parallel
    envs); applied by presets.train_preset after the task/size defaults and before the user's overrides."""


TASKS: dict[str, TaskSpec] = {}
ALGORITHMS: dict[str, AlgoSpec] = {}


BUILTIN_TASKS: set[str] = set()
_CHECKED: set[str] = set()


class UnknownTaskError(ConfigError, KeyError):
    """A task name that is neither registered nor an env spec (also a KeyError, for callers catching that)."""

    __str__ = Exception.__str__  # KeyError would print the message quoted


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make `spec` available by `spec.name` to every verb and API call in this process (replacing a task of the same
    name). To use it from the command line without a launcher, put it in a module and pass `--task module:ATTR`."""
    _load_builtin()  # first, so a user task may replace a built-in one of the same name
    TASKS[spec.name] = spec
    BUILTIN_TASKS.discard(spec.name)  # a user task under a built-in name is the user's: checked like any other
    _CHECKED.discard(spec.name)
    return spec


def get_task(name: str) -> TaskSpec:
    """The registered task, or the env spec `name` stands for (registered under `name` on first use). A task that is
    not built in has its env checked against the contract on first use (envs/check.py): broken items raise one
    ConfigError naming each of them."""
    _load_builtin()
    spec = TASKS.get(name)
    if spec is None:
        from flowft.envs import own

        if not own.is_env_spec(name):
            raise UnknownTaskError(f"unknown task '{name}': not a built-in task ({', '.join(sorted(BUILTIN_TASKS))}) "
                                   "nor a registered one, and not an env spec (a gymnasium id, 'package:EnvId', "
                                   "'module:callable' or a JSON object; docs/own_env.md)")
        spec = TASKS[name] = own.task_from_spec(name)
    if name not in BUILTIN_TASKS and name not in _CHECKED and spec.check:
        from flowft.envs.check import enforce_contract

        enforce_contract(spec)
        _CHECKED.add(name)
    return spec


def task_slug(name: str) -> str:
    """A short, file-name-safe form of a task name for run-dir names: a built-in name unchanged; an env spec -> its
    entry with `:` and `/` as `-` (`gymnasium_robotics-FetchPush-v4`), plus a hash of the whole spec when it has
    options (two specs never share a name)."""
    if name in BUILTIN_TASKS or re.fullmatch(r"[\w.-]{1,64}", name):
        return name
    from flowft.envs import own

    try:
        entry, options = own.parse_spec(name)["env"], name.lstrip().startswith("{")
    except ConfigError:
        entry, options = name, True
    short = re.sub(r"[^\w.-]+", "-", entry).strip("-")[:64] or "task"
    return f"{short}-{hashlib.sha1(name.encode()).hexdigest()[:8]}" if options else short


def make_env(task: Any, render: bool = False):
    """A fresh env of a task name or env spec, or of the task a loaded policy (`flowft.load_policy`) or a checkpoint
    config dict was trained on: `make_env(load_policy(run_dir))` rebuilds the training env."""
    if not isinstance(task, str):
        cfg = getattr(task, "config", task)
        task = cfg["task"] if cfg.get("kind") == "bc" else cfg["run"]["task"]
    return get_task(task).make(render)


def register_algorithm(name: str, spec: AlgoSpec) -> None:
    ALGORITHMS[name] = spec


def get_algorithm(name: str) -> AlgoSpec:
    _load_builtin()
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm '{name}'; available: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


_LOADED = False
BUILTIN_ALGORITHM_MODULES = (
    "flowft.presets",  # OGPO variants
    "flowft.algos.dppo",
    "flowft.algos.dsrl",
    "flowft.algos.qc",  # QC and Best-of-N SFT
    "flowft.algos.expo",
    "flowft.algos.residual",
)


def _load_builtin() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    from flowft.envs.catalog import builtin_tasks

    for spec in builtin_tasks():
        TASKS.setdefault(spec.name, spec)
        BUILTIN_TASKS.add(spec.name)
    for module in BUILTIN_ALGORITHM_MODULES:  # each module registers its presets on import
        importlib.import_module(module)


def task_names() -> list[str]:
    _load_builtin()
    return sorted(TASKS)


def algorithm_names() -> list[str]:
    _load_builtin()
    return sorted(ALGORITHMS)
