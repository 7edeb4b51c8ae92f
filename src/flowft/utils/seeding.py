"""Seeding and RNG-state (de)serialisation without pickle."""

from __future__ import annotations

import random

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def env_seeds(seed: int, n: int, stream: int = 0) -> list[int]:
    """Independent env seeds from one SeedSequence (not seed + i, which correlates adjacent runs)."""
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(n)]


def save_generators(path, gens: dict[str, torch.Generator]) -> None:
    save_file({k: g.get_state() for k, g in gens.items()}, str(path))


def load_generators(path, gens: dict[str, torch.Generator]) -> None:
    states = load_file(str(path))
    for k, g in gens.items():
        if k not in states:
            raise ValueError(f"{path}: missing RNG state '{k}'")
        g.set_state(states[k])
