"""Observation / action normalisation stored as buffers, so it travels inside model.safetensors."""

from __future__ import annotations

import torch
from torch import nn


class Normalizer(nn.Module):
    """Affine normaliser y = (x - shift) / scale.

    Observations use mean/std (z-score); actions use min/max mapped to [-1, 1] so that the flow's
    clipping to [-1, 1] (algorithm_reference §1.2) coincides with the environment's action bounds.
    With `identity=True` (robomimic convention: "no obs or action normalisation") both are no-ops.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit_zscore(self, x: torch.Tensor, eps: float = 1e-6) -> None:
        self.shift.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(eps))

    @torch.no_grad()
    def fit_minmax(self, x: torch.Tensor, lo: float = -1.0, hi: float = 1.0, eps: float = 1e-6) -> None:
        """Map the data range [min, max] to [lo, hi]; dims with (almost) no range keep scale 1."""
        xmin, xmax = x.min(0).values, x.max(0).values
        half = (xmax - xmin) / (hi - lo)
        self.shift.copy_(xmin - lo * half)
        self.scale.copy_(torch.where(half > eps, half, torch.ones_like(half)))

    def forward(self, x: torch.Tensor, clip: float | None = None) -> torch.Tensor:
        """Normalised x, clipped to +-clip when given (observations off the fitted data: `obs_clip`)."""
        y = (x - self.shift) / self.scale
        return y if clip is None else y.clamp(-clip, clip)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.shift
