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
