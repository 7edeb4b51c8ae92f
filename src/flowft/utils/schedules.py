"""Learning-rate schedules."""

from __future__ import annotations

import math


def restarting_warmup_cosine(step: int, peak: float, floor: float, warmup: int, cycle: int,
                             restart: bool = True) -> float:
    """OGPO_public maintenance.create_lr_schedule: linear warmup floor -> peak over `warmup` steps, cosine back to
    `floor` over the rest of a `cycle`-step cycle, restarting every `cycle` steps (`restart=False`: one cycle, then
    `floor` for good)."""
    if not restart and step >= cycle:
        return floor
    c = step % cycle
    if c < warmup:
        return floor + (peak - floor) * c / max(1, warmup)
    frac = (c - warmup) / max(1, cycle - warmup)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * frac))
