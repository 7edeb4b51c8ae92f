"""Euler ODE and marginal-preserving SDE samplers for a flow velocity field, with chain log-probs.

Time convention (algorithm_reference §1.2): t = 0 is noise, t = 1 is data, x_t = t*x1 + (1-t)*x0,
Euler grid t_k = k/K, dt = 1/K. The samplers take a `velocity(x, t)` callable so that they can be
tested against flows whose velocity is known analytically (tests/test_sde.py).

Shapes: R rows (any flattened batch, e.g. G*B), K denoising steps, d = H*Da.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from flowft.utils.validate import NONNEG, POS, check, rules

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [R, d], t [R]) -> v [R, d]
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class SDEConfig:
    """Stochastic sampler knobs. Defaults = the authors' released OGPO scripts (docs/algorithm.md)."""

    sigma_b: float = 0.05
    """Base per-step noise std; `constant_noise_std` in OGPO_public scripts."""
    schedule: Literal["tapered", "constant"] = "tapered"
    """tapered: sigma_k = sigma_b*sqrt(1-t_k) (all OGPO scripts); constant: sigma_b with a deterministic last step."""
    correction: Literal["consistent", "reference", "none"] = "consistent"
    """Score drift correction. `consistent`: mean = x + dt*v + sigma_k^2/2 * score, the Euler-Maruyama step that
    keeps the ODE marginals for per-step std sigma_k. `reference`: the authors' code, which also multiplies the
    correction by dt (K times smaller). `none`: no correction (ReinFlow-style; breaks marginals)."""
    clip_intermediate: bool = True
    """Clip each step's mean to [-1, 1] (`clip_intermediate_actions=true`)."""
    noise_clip: float = 3.0
    """Standard-normal draws are clipped to +-noise_clip (`randn_clip_value=3`)."""
    normalize_logprob: bool = True
    """Divide chain log-probs by (K+1)*d (`normalize_denoising_horizon` + `normalize_act_space_dimension`)."""

    def __post_init__(self):
        # sigma_b = 0 is a deterministic chain (live_steps skips its log-probs); a clip of 0 would zero all noise
        check(self, rules({"sigma_b": NONNEG, "noise_clip": POS}), "policy.sde.")


def sigma_schedule(cfg: SDEConfig, K: int, device: torch.device | None = None) -> torch.Tensor:
    """Per-step noise std sigma_k for k = 0..K-1 -> [K]."""
    t = torch.arange(K, dtype=torch.float32, device=device) / K
    if cfg.schedule == "tapered":
        return cfg.sigma_b * torch.sqrt(1.0 - t)
    sig = torch.full((K,), cfg.sigma_b, dtype=torch.float32, device=device)
    sig[-1] = 0.0  # constant sigma: last step deterministic to avoid the t -> 1 score singularity
    return sig


def step_mean(v: torch.Tensor, x: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor, K: int, cfg: SDEConfig) -> torch.Tensor:
    """Mean of x_{k+1} | x_k. v, x: [..., d]; t, sigma: broadcastable to [..., 1]."""
    dt = 1.0 / K
    mean = x + dt * v
    if cfg.correction != "none":
        # score from velocity for the linear interpolant: s = (t v - x) / (1 - t)  (§2.2);
        # sigma^2/2 * s. With the tapered schedule (1 - t) cancels exactly.
        if cfg.schedule == "tapered":
            corr = 0.5 * cfg.sigma_b**2 * (t * v - x)
        else:
            corr = 0.5 * sigma**2 * (t * v - x) / (1.0 - t)
        mean = mean + (dt * corr if cfg.correction == "reference" else corr)
    if cfg.clip_intermediate:
        mean = mean.clamp(-1.0, 1.0)
    return mean


def gaussian_logp(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim of log N(x; mean, sigma^2 I); sigma broadcastable to [..., 1], > 0."""
    d = x.shape[-1]
    z = (x - mean) / sigma
    return -0.5 * (z * z).sum(-1) - d * torch.log(sigma.squeeze(-1)) - 0.5 * d * LOG_2PI


@torch.no_grad()
def ode_sample(velocity: Velocity, x0: torch.Tensor, K: int, clip: bool = True) -> torch.Tensor:
    """Deterministic Euler integration from noise x0 [R, d] to an action [R, d] (no intermediate clipping,
    as OGPO_public `compute_flow_actions`); the final action is clipped to [-1, 1]."""
    x = x0.float()
    t = torch.zeros(x.shape[0], device=x.device)
    for k in range(K):
        x = x + velocity(x, t + k / K) / K
    return x.clamp(-1.0, 1.0) if clip else x


def live_steps(cfg: SDEConfig, K: int, std: torch.Tensor | None = None) -> list[bool]:
    """Which of the K transitions inject noise (std > 0), as Python bools: the schedule's zeros are known from cfg
    without reading a tensor, so compiled code needs no data-dependent branch (train/fastpath.py)."""
    if std is not None:
        return [bool(s) for s in (std > 0).tolist()]
    return [cfg.sigma_b > 0 and (cfg.schedule == "tapered" or k < K - 1) for k in range(K)]


def step_noise(R: int, d: int, live: list[bool], device: torch.device | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard-normal draws [K, R, d] for the live steps, in step order (zeros elsewhere): drawn before the chain
    so that the chain itself is a pure function (compilable); the stream is the one a draw per step would give."""
    eps = torch.zeros(len(live), R, d, device=device)
    for k, on in enumerate(live):
        if on:
            eps[k].normal_(generator=generator)
    return eps


@torch.no_grad()
def sde_sample(
    velocity: Velocity, x0: torch.Tensor, K: int, cfg: SDEConfig, generator: torch.Generator | None = None,
    std: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SDE chain from x0 [R, d]. Returns (action [R, d] clipped to [-1,1], chain [R, K+1, d], logp [R]).
    `std` [K] overrides the injected noise std (e.g. DPPO's exploration floor); the drift keeps cfg's schedule."""
    eps = step_noise(*x0.shape, live_steps(cfg, K, std), x0.device, generator)
    return sde_chain(velocity, x0, eps, K, cfg, std)


def sde_chain(
    velocity: Velocity, x0: torch.Tensor, eps: torch.Tensor, K: int, cfg: SDEConfig, std: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`sde_sample` given its noise eps [K, R, d] (`step_noise`); no RNG and no tensor-valued branch.

    The chain stores the *unclipped* x_K so that the teacher-forced recomputation (`chain_log_prob`) gives
    exactly the sampler's log-prob (fixes §1.11 point 3: ratio = 1 at theta = theta_bar).
    """
    R, d = x0.shape
    sig = sigma_schedule(cfg, K, x0.device)  # [K]
    noise_std = sig if std is None else std  # [K]
    live = live_steps(cfg, K, std)
    chain = torch.empty(R, K + 1, d, device=x0.device, dtype=torch.float32)  # [R, K+1, d]
    x = x0.float()
    chain[:, 0] = x
    logp = -0.5 * (x * x).sum(-1) - 0.5 * d * LOG_2PI  # log N(x0; 0, I)   [R]
    for k in range(K):
        t = torch.full((R, 1), k / K, device=x.device)
        mean = step_mean(velocity(x, t.squeeze(-1)), x, t, sig[k], K, cfg)
        if live[k]:
            x = mean + noise_std[k] * eps[k].clamp(-cfg.noise_clip, cfg.noise_clip)
            logp = logp + gaussian_logp(x, mean, noise_std[k].view(1, 1))
        else:
            x = mean
        chain[:, k + 1] = x
    if cfg.normalize_logprob:
        logp = logp / ((K + 1) * d)
    return x.clamp(-1.0, 1.0), chain, logp


def chain_log_prob(velocity: Velocity, chain: torch.Tensor, K: int, cfg: SDEConfig) -> torch.Tensor:
    """Teacher-forced log-prob of stored chains [R, K+1, d] -> [R], differentiable w.r.t. the velocity net.

    All K transitions are evaluated in one batched velocity call (R*K rows) instead of a Python loop.
    """
    R, _, d = chain.shape
    sig = sigma_schedule(cfg, K, chain.device)  # [K]
    x_prev = chain[:, :K]  # [R, K, d]
    t = (torch.arange(K, device=chain.device, dtype=torch.float32) / K).expand(R, K)  # [R, K]
    v = velocity(x_prev.reshape(R * K, d), t.reshape(R * K)).view(R, K, d)
    mean = step_mean(v, x_prev, t.unsqueeze(-1), sig.view(1, K, 1), K, cfg)  # [R, K, d]
    x0 = chain[:, 0]
    logp = -0.5 * (x0 * x0).sum(-1) - 0.5 * d * LOG_2PI
    live = [k for k, on in enumerate(live_steps(cfg, K)) if on]  # deterministic steps carry no density
    if live:  # Python indices, not a boolean mask: no data-dependent shape or branch under torch.compile
        idx = slice(None) if len(live) == K else live
        lp_steps = gaussian_logp(chain[:, 1:][:, idx], mean[:, idx], sig[idx].view(1, -1, 1))  # [R, K']
        logp = logp + lp_steps.sum(-1)
    if cfg.normalize_logprob:
        logp = logp / ((K + 1) * d)
    return logp


def transition_log_prob(v: torch.Tensor, x: torch.Tensor, x_next: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor,
                        std: torch.Tensor, K: int, cfg: SDEConfig) -> torch.Tensor:
    """Per-dimension log N(x_next; step_mean(v, x, t, sigma), std^2) of one Euler-Maruyama transition.
    v, x, x_next [..., d]; t, sigma (the schedule's std, for the drift), std (> 0, the transition's std)
    broadcastable to [..., 1] -> [..., d]. DPPO's per-denoising-step policy (algorithm_reference §2.5, §3)."""
    mean = step_mean(v, x, t, sigma, K, cfg)
    z = (x_next - mean) / std
    return -0.5 * z * z - torch.log(std) - 0.5 * LOG_2PI


def step_log_probs(velocity: Velocity, chain: torch.Tensor, K: int, cfg: SDEConfig,
                   std: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-forced per-step, per-dimension log-probs of the K transitions of chains [R, K+1, d] -> [R, K, d]
    (differentiable). `std` [K] overrides the transition std as in `sde_sample`; deterministic steps (std 0)
    contribute 0. (log N(x0; 0, I) + the sum over K and d) / ((K+1) d) equals `chain_log_prob` (tests/test_dppo.py)."""
    R, _, d = chain.shape
    sig = sigma_schedule(cfg, K, chain.device)  # [K]
    std = sig if std is None else std
    live = (std > 0).view(1, K, 1)
    x_prev = chain[:, :K]  # [R, K, d]
    t = (torch.arange(K, device=chain.device, dtype=torch.float32) / K).expand(R, K)  # [R, K]
    v = velocity(x_prev.reshape(R * K, d), t.reshape(R * K)).view(R, K, d)
    safe_std = torch.where(std > 0, std, torch.ones_like(std)).view(1, K, 1)
    lp = transition_log_prob(v, x_prev, chain[:, 1:], t.unsqueeze(-1), sig.view(1, K, 1), safe_std, K, cfg)
    return lp * live  # [R, K, d]
