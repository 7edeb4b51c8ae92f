"""Group Monte-Carlo advantages over imagined chains (algorithm_reference §1.4-1.5).

q: [G, M, B] target-critic values of G imagined final actions for B states and M heads.
"""

from __future__ import annotations

from typing import Literal

import torch

AdvantageKind = Literal["vanilla", "conservative", "penultimate"]


def group_baseline(values: torch.Tensor) -> torch.Tensor:
    """V_hat(s_i) = (1/G) sum_j values[j, ..., i]: values [G, ...] -> [...] (the sample itself included)."""
    return values.mean(0)


def vanilla_advantage(q: torch.Tensor) -> torch.Tensor:
    """A_ij = mean_m Q_m(s_i, a_ij) - mean_j' mean_m Q_m(s_i, a_ij'): [G, M, B] -> [G, B]."""
    qm = q.mean(1)
    return qm - group_baseline(qm)


def consensus_advantage(q: torch.Tensor, penultimate: bool = False) -> torch.Tensor:
    """Sign-consensus (conservative) advantage, OGPO+CA: per-head A_m = Q_m - mean_G Q_m;
    A = min_m A_m if min_m A_m > 0; max_m A_m if max_m A_m < 0; else 0 (pg_helper._safe_max).
    `penultimate` uses the 2nd smallest / 2nd largest head instead (needs M >= 2)."""
    per_head = q - group_baseline(q).unsqueeze(0)  # [G, M, B]
    if penultimate:
        srt = per_head.sort(dim=1).values
        lo, hi = srt[:, 1], srt[:, -2]
    else:
        lo, hi = per_head.min(1).values, per_head.max(1).values
    return lo * (lo > 0) + hi * (hi < 0)


def advantages(q: torch.Tensor, kind: AdvantageKind, normalize_group: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """[G, M, B] -> [G, B]. `normalize_group` divides by the group std (GRPO-style; off in OGPO)."""
    if kind == "vanilla":
        adv = vanilla_advantage(q)
    else:
        adv = consensus_advantage(q, penultimate=kind == "penultimate")
    if normalize_group:
        adv = adv / (adv.std(0, keepdim=True) + eps)
    return adv
