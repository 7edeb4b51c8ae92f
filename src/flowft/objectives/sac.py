"""Soft actor-critic pieces shared by DSRL, EXPO and residual RL (Haarnoja et al. 2018; algorithm_reference §4).

Temperature alpha = exp(log_alpha) is tuned to a target entropy; the soft TD target subtracts alpha * log pi of
the next action. Shapes: B batch, M critic heads.
"""

from __future__ import annotations

import torch
from torch import nn


class Temperature(nn.Module):
    def __init__(self, init: float = 1.0):
        super().__init__()
        if init <= 0:
            raise ValueError(f"initial temperature must be > 0, got {init}")
        self.log_alpha = nn.Parameter(torch.tensor(float(init)).log())

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def loss(self, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
        """Raise alpha while the policy's entropy -E[log pi] is below the target, lower it above."""
        return -(self.log_alpha * (logp.detach() + target_entropy)).mean()


def sac_actor_loss(q: torch.Tensor, logp: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """q [B] (already aggregated over heads, differentiable in the action), logp [B] -> E[alpha log pi - Q]."""
    return (alpha * logp - q).mean()


def soft_next_value(next_q: torch.Tensor, next_logp: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """Soft state value V(s') = Q(s', a') - alpha log pi(a'|s') for a' ~ pi (fed to critics.targets.td_target)."""
    return next_q - alpha * next_logp
