"""FPO / FPO++: flow policy optimisation with a CFM-loss likelihood-ratio proxy (algorithm_reference §4.4).

ratio = exp(L_CFM(theta_old) - L_CFM(theta)), both losses evaluated on the SAME (tau, eps) draws per sample, so the
ratio is exactly 1 at theta = theta_old. FPO averages the n Monte-Carlo losses before the exp and clips that one
ratio; FPO++ clips every (tau, eps) sample's ratio separately. Mirrors OGPO_public `pg_helper.py::
compute_fpo_cfm_ratios`, `compute_fpo_ppo_loss`, `compute_spo_penalty` (CFM losses summed over dims, optional
Huber, losses clamped to [0, loss_clamp], differences to +-diff_clamp).
Shapes: n Monte-Carlo pairs, R rows (flattened G*B samples), d = H*Da.
"""

from __future__ import annotations

from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [N, d], t [N]) -> v [N, d]


def cfm_mc_losses(velocity: Velocity, x1: torch.Tensor, tau: torch.Tensor, eps: torch.Tensor,
                  huber_delta: float | None = None) -> torch.Tensor:
    """Per-sample conditional flow-matching losses: x1 [R, d] clean (flow-space) actions, tau [n, R], eps [n, R, d]
    -> [n, R]. x_tau = tau*x1 + (1-tau)*eps, target velocity x1 - eps (t = 0 noise, 1 data, §1.2); the velocity
    callable sees n*R rows ordered [n, R] (repeat its observations n times with `.repeat(n, 1)`).
    Squared error (or Huber with `huber_delta`) summed over the d action dims."""
    n, R, d = eps.shape
    xt = tau.unsqueeze(-1) * x1 + (1.0 - tau.unsqueeze(-1)) * eps  # [n, R, d]
    diff = velocity(xt.reshape(n * R, d), tau.reshape(n * R)).view(n, R, d) - (x1 - eps)
    if huber_delta is None:
        per_dim = diff * diff
    else:
        a = diff.abs()
        per_dim = torch.where(a <= huber_delta, diff * diff, 2.0 * huber_delta * a - huber_delta**2)
    return per_dim.sum(-1)


def fpo_log_ratio(loss_old: torch.Tensor, loss_new: torch.Tensor, per_sample: bool = True,
                  loss_clamp: float = 4.0, diff_clamp: float = 5.0) -> torch.Tensor:
    """log ratio from CFM losses [n, R] (old detached): per_sample (FPO++) -> [n, R] with one ratio per (tau, eps)
    draw; otherwise (FPO) -> [1, R] from the Monte-Carlo mean losses. Clamped as the reference."""
    old = loss_old.detach().clamp(0.0, loss_clamp)
    new = loss_new.clamp(0.0, loss_clamp)
    if not per_sample:
        old, new = old.mean(0, keepdim=True), new.mean(0, keepdim=True)
    return (old - new).clamp(-diff_clamp, diff_clamp)


def spo_penalty(ratio: torch.Tensor, adv: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """SPO restoring penalty |A| * (distance of the ratio outside [1-eps, 1+eps])^2 / (4 eps)."""
    excess = (ratio - (1.0 + clip_eps)).clamp_min(0.0) + ((1.0 - clip_eps) - ratio).clamp_min(0.0)
    return excess * excess * adv.abs() / (4.0 * clip_eps)


def fpo_clip_loss(log_ratio: torch.Tensor, adv: torch.Tensor, clip_eps: float, aspo: bool = False) -> torch.Tensor:
    """Clipped surrogate on FPO ratios: log_ratio [n or 1, R], adv [R] (broadcast over the Monte-Carlo axis) ->
    -mean(min(r A, clip(r) A)). `aspo` (FPO++'s asymmetric trust region): PPO for A > 0, r A - SPO penalty for
    A <= 0."""
    ratio, adv = torch.exp(log_ratio), adv.detach().unsqueeze(0)
    obj = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    if aspo:
        obj = torch.where(adv > 0, obj, ratio * adv - spo_penalty(ratio, adv, clip_eps))
    return -obj.mean()
