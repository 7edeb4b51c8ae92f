"""Small network blocks shared by policies and critics.

Shape alphabet used across flowft: B states, G group (imagined samples per state), M critic heads,
K denoising steps, H chunk length, Da action dim, Do obs dim, N envs, d = H*Da flattened chunk.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "gelu", "gelu-tanh", "silu", "mish", "tanh"]
"""gelu is torch's exact (erf) GELU; gelu-tanh its tanh approximation, which is what the authors' flax `nn.gelu`
computes (jax.nn.gelu defaults to approximate=True; OGPO_public networks/modules/mlp.py). The two differ by < 5e-4
per unit. gelu-tanh is not faster on CPU: eager 4-12 % slower (oneDNN's erf GELU), compiled no faster
(docs/benchmarks.md, issue 18)."""


class GELUTanh(nn.GELU):
    """nn.GELU(approximate="tanh") as a class, so that ACTIVATIONS maps every name to a no-argument constructor."""

    def __init__(self):
        super().__init__(approximate="tanh")


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu-tanh": GELUTanh,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "tanh": nn.Tanh,
}


def mlp(
    in_dim: int,
    hidden: tuple[int, ...],
    out_dim: int,
    activation: Activation = "gelu",
    layer_norm: bool = False,
) -> nn.Sequential:
    """Plain MLP; LayerNorm after each hidden Linear when asked (critics use it, the actor does not)."""
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden:
        layers.append(nn.Linear(prev, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[activation]())
        prev = width
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of the flow time t in [0, 1] (dim 32 as OGPO_public common.yaml)."""

    def __init__(self, dim: int = 32, max_period: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"time_embed_dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # t: [...] -> [..., dim]; scaled by 1000 so that t in [0,1] spans the frequencies like diffusion steps.
        args = (t.float() * 1000.0).unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class MLPTimeEmbedding(nn.Module):
    """The authors' time embedding (OGPO_public networks/modules/time_embedding.py): sin/cos of the raw t with
    frequencies exp(-log(1e4) i / (half - 1)), then Linear(dim, 2 dim) - GELU - Linear(2 dim, dim). Unlike
    SinusoidalEmbedding (t scaled by 1000, no MLP) it is learned, so a checkpoint carries its weights. `activation`:
    the hidden nonlinearity (gelu = exact erf GELU, flowft's default; gelu-tanh = the authors' flax nn.gelu)."""

    def __init__(self, dim: int = 32, activation: Activation = "gelu"):
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"time_embed_dim must be even and >= 4, got {dim}")
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32)
                                                / (half - 1)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), ACTIVATIONS[activation](), nn.Linear(2 * dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float().unsqueeze(-1) * self.freqs  # [..., dim/2]
        return self.mlp(torch.cat([torch.sin(args), torch.cos(args)], dim=-1))
