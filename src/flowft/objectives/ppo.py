"""Clipped PPO surrogate over whole denoising chains (OGPO, algorithm_reference §1.4 and the site's eq.).

The ratio is exp(logp_new - logp_old) of (normalised) chain log-probs; the old policy is the EMA target actor.
"""

from __future__ import annotations

import torch


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """L = -mean(min(r A, clip(r, 1-eps, 1+eps) A)); all inputs [G, B] (or any equal shape)."""
    log_ratio = logp - old_logp.detach()
    ratio = torch.exp(log_ratio)
    adv = adv.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    return -surrogate.mean()


@torch.no_grad()
def ratio_stats(log_ratio: torch.Tensor, clip_eps: float) -> dict[str, float]:
    """Diagnostics of the importance ratio: mean, max, clipped fraction, approximate KL (k3 estimator)."""
    ratio = torch.exp(log_ratio.detach())
    return {
        "ratio_mean": ratio.mean().item(),
        "ratio_max": ratio.max().item(),
        "clip_frac": ((ratio - 1.0).abs() > clip_eps).float().mean().item(),
        "approx_kl": ((ratio - 1.0) - log_ratio.detach()).mean().item(),
    }


CPU_MICROBATCH_CHAINS = 1024  # cache-sized [chains*K, 512] activations on CPU (docs/benchmarks.md)


def group_slices(G: int, B: int, microbatch_chains: int | None, device_type: str) -> list[slice]:
    """Slices of the G group members for gradient accumulation, each holding at most ~microbatch_chains chains
    (g*B) and at least one member. 0 = one slice; None = CPU_MICROBATCH_CHAINS on CPU and one slice elsewhere
    (on an H100 the paper update ran 73 ms sliced vs 55 ms in one slice, docs/benchmarks.md)."""
    mbc = microbatch_chains if microbatch_chains is not None else (CPU_MICROBATCH_CHAINS if device_type == "cpu" else 0)
    mb = G if mbc <= 0 else max(1, min(G, mbc // max(1, B)))  # group members per micro-batch
    return [slice(g, min(G, g + mb)) for g in range(0, G, mb)]
