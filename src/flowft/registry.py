"""The one place where names map to code: tasks (envs + demo generators) and algorithms.

Simulator families register lazily (their modules import the simulator only when an env is built), so the
registry itself never needs robosuite or gymnasium-robotics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import gymnasium as gym


@dataclass(frozen=True)
class TaskSpec:
    name: str
    make: Callable[[bool], gym.Env]
    """make(render) -> a fresh env; seeding happens through reset(seed=...)."""
    generate: Callable[..., list[dict]]
    """generate(n, seed, action_noise[, style=...]) -> episodes in the flowft episode format."""
    meta: Callable[[], dict]
    vectorization: Literal["sync", "async"] = "sync"
    chunk_len: int = 4
    gamma: float = 0.99
    denoise_steps: int = 10
    extra: str = ""
    """pip extra that provides the simulator ("" for none)."""
    demo_styles: tuple[str, ...] = ()
    """Styles `generate` accepts as style=... (robosuite experts: operator_noise.STYLES); the first is the default
    of `demos` (`flowft demos`, quickstart). () = the generator has one style."""

    def demos(self, n: int, seed: int, action_noise: float | None = None, style: str | None = None) -> list[dict]:
        """`generate` with the command-line defaults: the task's default style, and i.i.d. action noise 0.1 (the
        long-standing default) except for the operator style, which brings its own noise (None = that default)."""
        styles = self.demo_styles or ("clean",)  # a one-style generator: its expert + i.i.d. noise is "clean"
        if style is not None and style not in styles:
            raise ValueError(f"task '{self.name}' has no demo style '{style}'; styles: {styles}")
        style = style or (self.demo_styles[0] if self.demo_styles else None)
        noise = action_noise if action_noise is not None else (0.0 if style == "operator" else 0.1)
        return self.generate(n, seed, noise, style=style) if self.demo_styles else self.generate(n, seed, noise)


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


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    _load_builtin()
    if name not in TASKS:
        raise KeyError(f"unknown task '{name}'; available: {sorted(TASKS)}")
    return TASKS[name]


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

    from flowft.envs import catalog  # noqa: F401  (registers tasks)

    for module in BUILTIN_ALGORITHM_MODULES:  # each module registers its presets on import
        importlib.import_module(module)


def task_names() -> list[str]:
    _load_builtin()
    return sorted(TASKS)


def algorithm_names() -> list[str]:
    _load_builtin()
    return sorted(ALGORITHMS)
