"""TaskSpec: what flowft needs to know about a task (env factory, demo generator, chunk length, ...).

A leaf module (it imports nothing of flowft), so the built-in catalog, the registry and user code can all import it
without an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import gymnasium as gym


def _no_generator(name: str) -> Callable[..., list[dict]]:
    def generate(n, seed, action_noise=0.1, **_):
        raise NotImplementedError(f"task '{name}' has no demo generator (no scripted expert): record demonstrations "
                                  "yourself and pass the HDF5 file to `flowft pretrain --demos` (docs/own_env.md)")
    return generate


def _default_meta(name: str) -> Callable[[], dict]:
    return lambda: {"env_name": name, "obs_keys": ["obs"]}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    make: Callable[[bool], gym.Env]
    """make(render) -> a fresh env; seeding happens through reset(seed=...)."""
    generate: Callable[..., list[dict]] | None = None
    """generate(n, seed, action_noise[, style=...]) -> episodes in the flowft episode format; None = no scripted
    expert (`demos` then says to bring a demonstration file)."""
    meta: Callable[[], dict] | None = None
    """() -> JSON-able env metadata written into demo files; None = {"env_name": name, "obs_keys": ["obs"]}."""
    vectorization: Literal["sync", "async"] = "sync"
    chunk_len: int = 4
    gamma: float = 0.99
    denoise_steps: int = 10
    extra: str = ""
    """pip extra that provides the simulator ("" for none)."""
    demo_styles: tuple[str, ...] = ()
    """Styles `generate` accepts as style=... (robosuite experts: operator_noise.STYLES); the first is the default
    of `demos` (`flowft demos`, quickstart). () = the generator has one style."""
    simulator: bool = True
    """A physics simulator or any user env (the default): the critic warms up alone for 1000 updates, the presets act
    with one SDE sample until 2000 updates and with Best-of-8 after, and use the simulator budgets (presets.py).
    False only for cheap pure-numpy tasks (toy), whose presets act Best-of-N from the first update with the fast CPU
    learner."""
    check: bool = True
    """Run the env-contract checker (envs/check.py) when a non-built-in task is first used in a process."""

    def __post_init__(self):
        # fill the optional callables here, so every caller can call task.generate / task.meta() unconditionally
        if self.generate is None:
            object.__setattr__(self, "generate", _no_generator(self.name))
        if self.meta is None:
            object.__setattr__(self, "meta", _default_meta(self.name))

    def demos(self, n: int, seed: int, action_noise: float | None = None, style: str | None = None) -> list[dict]:
        """`generate` with the command-line defaults: the task's default style, and i.i.d. action noise 0.1 (the
        long-standing default) except for the operator style, which brings its own noise (None = that default)."""
        styles = self.demo_styles or ("clean",)  # a one-style generator: its expert + i.i.d. noise is "clean"
        if style is not None and style not in styles:
            raise ValueError(f"task '{self.name}' has no demo style '{style}'; styles: {styles}")
        style = style or (self.demo_styles[0] if self.demo_styles else None)
        noise = action_noise if action_noise is not None else (0.0 if style == "operator" else 0.1)
        return self.generate(n, seed, noise, style=style) if self.demo_styles else self.generate(n, seed, noise)
