"""Q-ensemble with M heads evaluated in one batched pass (baddbmm over the head axis), LayerNorm, Polyak targets.

Shapes: M heads, R rows (states x actions), Do obs dim, d = H*Da flattened chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from flowft.policies.networks import ACTIVATIONS, Activation
from flowft.policies.normalizer import Normalizer
from flowft.utils.validate import INT_POS, WIDTHS, check, number, rules

Aggregation = Literal["mean", "min", "subsample", "subsample_each"]


@dataclass(frozen=True)
class CriticConfig:
    num_heads: int = 10
    """M (`num_qs`)."""
    hidden: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden widths of each head's MLP (every head has the same shape; input: obs and the flattened chunk)."""
    activation: Activation = "gelu"
    """Nonlinearity after each hidden layer (relu, gelu, gelu-tanh, silu, mish, tanh; gelu-tanh = the authors'
    flax nn.gelu)."""
    layer_norm: bool = True
    """LayerNorm (per-head gain and bias) after each hidden Linear, before the activation."""
    obs_clip: float | None = None
    """Clip the normalised observations (the BC policy's z-score) to +-obs_clip; None = no clip (policy.obs_clip)."""

    def __post_init__(self):
        check(self, rules({"num_heads": INT_POS, "hidden": WIDTHS, "obs_clip": number(gt=0, none="no clip")}),
              "critic.")


class EnsembleLinear(nn.Module):
    """M independent Linear layers applied as one batched matmul: x [M, R, in] -> [M, R, out]."""

    def __init__(self, M: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per head
        self.weight = nn.Parameter(torch.empty(M, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(M, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class CriticEnsemble(nn.Module):
    """Q_m(s, a) for m = 1..M. Inputs are raw env obs and env-space chunks; normalisation is inside."""

    def __init__(self, obs_dim: int, act_dim: int, chunk_len: int, cfg: CriticConfig):
        super().__init__()
        self.cfg, self.M = cfg, cfg.num_heads
        self.obs_normalizer = Normalizer(obs_dim)
        self.act_normalizer = Normalizer(act_dim)
        dims = (obs_dim + chunk_len * act_dim, *cfg.hidden)
        self.layers = nn.ModuleList(EnsembleLinear(self.M, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.ln_gain = nn.ParameterList(nn.Parameter(torch.ones(self.M, 1, w)) for w in cfg.hidden)
        self.ln_bias = nn.ParameterList(nn.Parameter(torch.zeros(self.M, 1, w)) for w in cfg.hidden)
        self.out = EnsembleLinear(self.M, dims[-1], 1)
        self.act = ACTIVATIONS[cfg.activation]()

    def copy_normalizers(self, obs_norm: Normalizer, act_norm: Normalizer) -> None:
        self.obs_normalizer.load_state_dict(obs_norm.state_dict())
        self.act_normalizer.load_state_dict(act_norm.state_dict())

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """obs [..., Do], actions [..., H, Da] (same leading dims) -> q [M, ...]."""
        lead = obs.shape[:-1]
        z = self.obs_normalizer(obs.float(), self.cfg.obs_clip)
        x = torch.cat([z, self.act_normalizer(actions.float()).flatten(-2)], -1)
        x = x.reshape(1, -1, x.shape[-1]).expand(self.M, -1, -1)  # [M, R, in]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.cfg.layer_norm:
                x = F.layer_norm(x, x.shape[-1:]) * self.ln_gain[i] + self.ln_bias[i]
            x = self.act(x)
        return self.out(x).squeeze(-1).view(self.M, *lead)  # [M, ...]


def aggregate(q: torch.Tensor, how: Aggregation, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reduce the head axis (dim 0) of q [M, ...]: mean | min | min over 2 random heads. `subsample`: one distinct
    pair for the whole call; `subsample_each`: an independent pair per element, drawn with replacement (OGPO_public
    `sample_actions_BON` with `subsample_bon`: randint over (2, B, N), so a pair may repeat a head)."""
    if how == "mean":
        return q.mean(0)
    if how == "min":
        return q.min(0).values
    dev = generator.device if generator is not None else q.device
    if how == "subsample_each":
        idx = torch.randint(0, q.shape[0], (2, *q.shape[1:]), generator=generator, device=dev).to(q.device)
        return q.gather(0, idx).min(0).values
    if q.shape[0] < 2:
        return q[0]
    idx = torch.randperm(q.shape[0], generator=generator, device=dev)[:2].to(q.device)
    return q.index_select(0, idx).min(0).values


def pick_best(cands: torch.Tensor, q: torch.Tensor, how: Aggregation,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-of-N selection: candidates [n, B, H, Da] with scores q [M, n, B] -> (the `how`-aggregated argmax
    chunk per state [B, H, Da], the aggregated scores [n, B])."""
    score = aggregate(q, how, generator)  # [n, B]
    best = score.argmax(0)  # [B]
    return cands[best, torch.arange(cands.shape[1], device=cands.device)], score


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source on parameters; buffers (normalisers) are copied."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
    for tb, sb in zip(target.buffers(), source.buffers()):
        tb.copy_(sb)
