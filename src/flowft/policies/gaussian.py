"""Bounded tanh-Gaussian policy head shared by the SAC-style baselines (DSRL noise actor, EXPO edit policy,
residual RL). algorithm_reference §4.1, §4.3, §4.5.

u = bound * tanh(z),  z ~ N(mu(x), sigma(x)^2),  log pi(u|x) = log N(z) - sum log(bound * (1 - tanh(z)^2)).
The caller normalises the input features x (obs, or obs + base action); the head only maps x -> u.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from flowft.policies.networks import Activation, mlp
from flowft.utils.validate import FINITE, WIDTHS, check, rules


@dataclass(frozen=True)
class GaussianConfig:
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the MLP that outputs the mean and log-std."""
    activation: Activation = "relu"
    """Nonlinearity after each hidden layer (relu, gelu, silu, mish, tanh)."""
    log_std_min: float = -5.0
    """Lower clamp of the log-std output (natural log of sigma, before the tanh squash)."""
    log_std_max: float = 2.0
    """Upper clamp of the log-std output; must be > log_std_min."""
    init_log_std: float = 0.0
    """Initial log sigma (bias of the log-std output; weights start at zero so every state starts equal)."""
    zero_mean_init: bool = False
    """Start with mu(x) = 0 exactly (residual / edit policies start as 'no change')."""

    def __post_init__(self):
        # no single home: it is --algo.noise-actor / --algo.edit / --algo.residual (named exactly from the parent)
        check(self, rules({"hidden": WIDTHS, ("log_std_min", "log_std_max", "init_log_std"): FINITE}), None,
              lambda c, flag: [(c.log_std_min < c.log_std_max, "log_std_min", f"must be < {flag('log_std_max')} "
                                f"({c.log_std_max})")])


class TanhGaussian(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, cfg: GaussianConfig = GaussianConfig(), bound: float = 1.0):
        super().__init__()
        if bound <= 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        self.cfg, self.out_dim, self.bound = cfg, out_dim, float(bound)
        self.net = mlp(in_dim, cfg.hidden, 2 * out_dim, cfg.activation)
        last: nn.Linear = self.net[-1]
        with torch.no_grad():
            last.weight[out_dim:].zero_()
            last.bias[out_dim:].fill_(cfg.init_log_std)
            if cfg.zero_mean_init:
                last.weight[:out_dim].zero_()
                last.bias[:out_dim].zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., in] -> mean [..., d], log_std [..., d] (clamped)."""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample: x [..., in] -> u [..., d] in (-bound, bound), log pi(u|x) [...]."""
        mean, log_std = self(x)
        eps = torch.randn(mean.shape, device=mean.device, generator=generator)
        z = mean + log_std.exp() * eps
        return self.bound * torch.tanh(z), tanh_gaussian_log_prob(z, mean, log_std, self.bound)

    def mode(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic action bound * tanh(mu(x))."""
        return self.bound * torch.tanh(self(x)[0])


def tanh_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, bound: float) -> torch.Tensor:
    """log density of u = bound * tanh(z) for z ~ N(mean, exp(log_std)^2), summed over the last dim."""
    gauss = -0.5 * ((z - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(z)^2) = 2 (log 2 - z - softplus(-2z)), numerically stable for large |z|
    log_det = 2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z)) + math.log(bound)
    return (gauss - log_det).sum(-1)
