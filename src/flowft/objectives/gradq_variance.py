"""Diagnostic for the paper's claim (issue 6 (h)): how the policy's action distribution spreads along vs
orthogonal to the critic's action gradient. BPTT-style extraction is expected to collapse the spread along grad_a Q
while the group objectives keep it. Shapes: G samples per state, B states, d = H*Da.
"""

from __future__ import annotations

from typing import Callable

import torch


def q_gradient_at_mean(q_fn: Callable[[torch.Tensor], torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
    """Unit grad_a Q at each state's mean action: actions [G, B, H, Da], q_fn(a [B, H, Da]) -> [B] -> g [B, H*Da].
    A state whose gradient vanishes gets g = 0 (it then contributes var_along = 0)."""
    with torch.enable_grad():
        a = actions.detach().mean(0).requires_grad_(True)  # [B, H, Da]
        (g,) = torch.autograd.grad(q_fn(a).sum(), a)  # rows are independent, so d(sum)/da_i = dQ_i/da_i
    g = g.flatten(-2)
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def variance_along_direction(samples: torch.Tensor, direction: torch.Tensor) -> tuple[float, float]:
    """samples [G, B, d], unit direction [B, d] -> (var_along, var_orth): var_along = mean_B Var_G(<a, g>),
    var_orth = mean_B (trace Cov_G(a) - Var_G(<a, g>)) / (d - 1), i.e. the per-dimension variance of the
    orthogonal complement (unbiased variances over the group)."""
    G, B, d = samples.shape
    if G < 2 or d < 2:
        raise ValueError(f"variance_along_direction needs G >= 2 samples and d >= 2 dims, got {tuple(samples.shape)}")
    if direction.shape != (B, d):
        raise ValueError(f"direction must be [{B}, {d}], got {tuple(direction.shape)}")
    xc = samples - samples.mean(0)  # [G, B, d]
    along = ((xc * direction).sum(-1) ** 2).sum(0) / (G - 1)  # [B]
    total = (xc * xc).sum((0, 2)) / (G - 1)  # [B]
    return along.mean().item(), ((total - along) / (d - 1)).mean().item()
