"""Advantage-weighted extraction for flow policies (algorithm_reference §1.9, §4.6).

OGPO_public `pg_helper.py::compute_ogpo_advantages(adv_strategy="awr")` and `compute_awr_cfm_loss`:
weights w = clip(exp(A / beta), 0, w_max) in three modes. "AW-OGPO" plugs w into the clipped PPO surrogate in place
of A (`objectives/ppo.py::ppo_clip_loss`); "AWR-FM" regresses the group's samples with a w-weighted CFM loss.
Shapes: G group, B states, n Monte-Carlo (tau, eps) pairs.
"""

from __future__ import annotations

from typing import Literal

import torch

AWRMode = Literal["symmetric", "asymmetric", "positive_only"]


def awr_weights(adv: torch.Tensor, beta: float, mode: AWRMode = "symmetric", weight_max: float = 20.0,
                beta_neg: float | None = None) -> torch.Tensor:
    """Exponentiated-advantage weights, any shape -> same shape, clipped to [0, weight_max].

    symmetric:     w = exp(A / beta)
    asymmetric:    w = exp(A / beta) for A > 0 and exp(A / beta_neg) for A <= 0; beta_neg = None is an infinite
                   temperature, w = 1 there: the reference's exp(max(0, A) / beta)
    positive_only: w = exp(A / beta) * 1[A > 0] (no gradient from A <= 0)
    """
    if beta <= 0:
        raise ValueError(f"awr_beta must be > 0, got {beta}")
    if weight_max <= 0:
        raise ValueError(f"awr_weight_max must be > 0, got {weight_max}")
    if beta_neg is not None and beta_neg <= 0:
        raise ValueError(f"awr_beta_neg must be > 0 or None, got {beta_neg}")
    adv = adv.detach()
    if mode == "symmetric":
        w = torch.exp(adv / beta)
    elif mode == "asymmetric":
        neg = torch.ones_like(adv) if beta_neg is None else torch.exp(adv.clamp_max(0.0) / beta_neg)
        w = torch.where(adv > 0, torch.exp(adv.clamp_min(0.0) / beta), neg)
    elif mode == "positive_only":
        w = torch.exp(adv / beta) * (adv > 0)
    else:
        raise ValueError(f"awr_mode must be symmetric | asymmetric | positive_only, got {mode!r}")
    return w.clamp(0.0, weight_max)


def awr_fm_loss(cfm_losses: torch.Tensor, weights: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """AWR-FM: cfm_losses [n, G, B] per-(tau, eps) CFM losses of the group's samples, weights [G, B] ->
    mean_{G,B}(w_hat * mean_n L), with w_hat = w / mean_B(w) (weights normalised to mean 1 per group index over
    the batch, as the reference vmaps `compute_awr_cfm_loss` over G)."""
    w = weights.detach()
    w = w / (w.mean(-1, keepdim=True) + eps)
    return (w * cfm_losses.mean(0)).mean()
