"""Shared import guard for the gymnasium-robotics families (Adroit, Franka Kitchen)."""

from __future__ import annotations

import warnings

import gymnasium


def import_gym_robotics(install_hint: str):
    """Import gymnasium_robotics (registering its env ids) or raise an ImportError naming the pip extra."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import gymnasium_robotics
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(install_hint) from e
    try:
        gymnasium.register_envs(gymnasium_robotics)
    except AttributeError:  # pragma: no cover - old gymnasium
        pass
    return gymnasium_robotics


def first_reset_seed(env: gymnasium.Env, seed: int | None) -> int | None:
    """The seed a wrapped gymnasium-robotics env resets its simulator with: the caller's, else the constructor's
    `env._seed` on the very first reset (so `Env(seed=s).reset()` is reproducible); seeds the action space too."""
    if seed is None and not env._seeded:
        seed = env._seed
    if seed is not None:
        env._seeded = True
        env.action_space.seed(seed)
    return seed
