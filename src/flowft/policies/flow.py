"""Flow-matching action-chunk policy: velocity MLP over (obs, x_t, t), CFM loss, ODE / SDE sampling.

Shapes: B states, G group, K denoising steps, H chunk length, Da action dim, Do obs dim, d = H*Da.
Actions are handled in the normalised space in which the flow lives ([-1, 1] per dim); `act_normalizer`
maps env actions to it. Chains and log-probs are always fp32 (algorithm_reference §5 point 4).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from flowft.policies.networks import Activation, MLPTimeEmbedding, SinusoidalEmbedding, mlp
from flowft.policies.normalizer import Normalizer
from flowft.policies.sde import SDEConfig, chain_log_prob, live_steps, ode_sample, sde_chain, step_log_probs, step_noise
from flowft.utils.validate import INT_POS, WIDTHS, check, number, rules


_ZERO_START = contextvars.ContextVar("flowft_zero_start", default=False)


@contextlib.contextmanager
def zero_start():
    """Inside this block every `sample_ode` call without explicit noise starts its chain from x0 = 0 instead of a
    draw from N(0, I): one deterministic chunk per state (FPO++'s "zero-sampling"; the `ode_zero` sampler). A context
    rather than an argument so that it reaches the flows inside any algorithm's ODE policy (base, actor, target)."""
    token = _ZERO_START.set(True)
    try:
        yield
    finally:
        _ZERO_START.reset(token)


def sample_ode_zero(policy: "FlowPolicy", obs: torch.Tensor) -> torch.Tensor:
    """`policy`'s ODE chunk [B, H, Da] integrated from x0 = 0 (the `ode_zero` sampler of one flow policy; an
    algorithm's goes through `algos.base.act_sampler`)."""
    with zero_start():
        return policy.sample_ode(obs)


@dataclass(frozen=True)
class FlowPolicyConfig:
    hidden: tuple[int, ...] = (512, 512, 512, 512)
    """Velocity MLP widths; 4x512 in the paper (5x512 transport/toolhang). No LayerNorm in the actor."""
    activation: Activation = "gelu"
    """Nonlinearity after each hidden layer of the velocity MLP (relu, gelu, gelu-tanh, silu, mish, tanh; gelu is the
    exact erf GELU, gelu-tanh the authors' flax nn.gelu). With time_embed mlp a GELU variant is used there too."""
    time_embed_dim: int = 32
    """Width of the flow-time embedding fed to the velocity MLP (even; >= 4 with time_embed mlp)."""
    time_embed: Literal["scaled", "mlp"] = "scaled"
    """scaled: sin/cos of 1000*t, no parameters (flowft's original); mlp: sin/cos of raw t then Linear-GELU-Linear
    (the authors'). A BC checkpoint must be finetuned with the embedding it was trained with."""
    denoise_steps: int = 10
    """K, Euler steps of the flow (10 robomimic/kitchen, 3 Adroit)."""
    sde: SDEConfig = field(default_factory=SDEConfig)
    obs_norm: Literal["zscore", "none"] = "zscore"
    """Observation normalisation fitted on the BC data. The authors use none for robomimic; z-score is our
    default because it makes one preset work across envs with very different obs scales."""
    action_norm: Literal["none", "minmax"] = "none"
    """Actions are already in [-1, 1] for every supported env, so no normalisation by default."""
    obs_clip: float | None = None
    """Clip the normalised observations to +-obs_clip (None = no clip; SB3's VecNormalize clips at 10). A z-score
    fitted on a few demonstrations explodes off their support: on Lift the scripted expert never rotates the
    gripper, so its quaternion's std is 0.002 and online states read |z| up to 1000 (docs/tasks.md)."""

    def __post_init__(self):
        # sin/cos halves need an even width; the mlp embedding's frequencies divide by (half - 1), so half >= 2
        least = 4 if self.time_embed == "mlp" else 2
        check(self, rules({"hidden": WIDTHS, ("denoise_steps", "time_embed_dim"): INT_POS,
                           "obs_clip": number(gt=0, none="no clip")}), "policy.",
              lambda c, flag: [(c.time_embed_dim % 2 == 0 and c.time_embed_dim >= least, "time_embed_dim",
                                f"must be even and >= {least} (time_embed {c.time_embed})")])


@dataclass
class SDESample:
    actions: torch.Tensor  # [G, B, H, Da] env-space actions
    chain: torch.Tensor  # [G, B, K+1, d] normalised-space chain (x_K unclipped)
    logp: torch.Tensor  # [G, B]


class FlowPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, chunk_len: int, cfg: FlowPolicyConfig):
        super().__init__()
        self.obs_dim, self.act_dim, self.chunk_len, self.cfg = obs_dim, act_dim, chunk_len, cfg
        self.flat_dim = chunk_len * act_dim
        self.obs_normalizer = Normalizer(obs_dim)
        self.act_normalizer = Normalizer(act_dim)
        if cfg.time_embed == "mlp":  # the authors' embedding MLP is always a GELU: the chosen variant if it is one
            gelu = cfg.activation if cfg.activation.startswith("gelu") else "gelu"
            self.time_embed = MLPTimeEmbedding(cfg.time_embed_dim, gelu)
        else:
            self.time_embed = SinusoidalEmbedding(cfg.time_embed_dim)
        self.net = mlp(obs_dim + self.flat_dim + cfg.time_embed_dim, cfg.hidden, self.flat_dim, cfg.activation)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """[..., Do] env observations -> [..., Do] network inputs (z-score, clipped to +-obs_clip when set)."""
        return self.obs_normalizer(obs.float(), self.cfg.obs_clip)

    # ----------------------------------------------------------------------------------------- data stats
    def fit_normalizers(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        """obs [N, Do], actions [N, Da] from the BC dataset."""
        if self.cfg.obs_norm == "zscore":
            self.obs_normalizer.fit_zscore(obs.float())
        if self.cfg.action_norm == "minmax":
            self.act_normalizer.fit_minmax(actions.float())

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """[..., H, Da] env actions -> [..., d] flow space."""
        return self.act_normalizer(actions.float()).flatten(-2)

    def unnormalize_actions(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d] flow space -> [..., H, Da] env actions."""
        return self.act_normalizer.inverse(x.unflatten(-1, (self.chunk_len, self.act_dim)))

    # --------------------------------------------------------------------------------------------- model
    def velocity(self, obs_n: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """obs_n [R, Do] (normalised), x [R, d], t [R] -> v [R, d]."""
        return self.net(torch.cat([obs_n, x, self.time_embed(t)], dim=-1))

    def _velocity_fn(self, obs: torch.Tensor, reps: int = 1):
        """Bind (normalised) observations to a velocity(x, t) closure; rows are obs repeated `reps` times
        (used by the teacher-forced log-prob, where each chain contributes K rows)."""
        obs_n = self.normalize_obs(obs)
        if reps > 1:
            obs_n = obs_n.repeat_interleave(reps, dim=0)
        return lambda x, t: self.velocity(obs_n, x, t)

    def cfm_loss(
        self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Conditional flow-matching loss (igp_targets_helper.get_flow_targets): obs [B, Do], actions [B, H, Da],
        valid [B, H] masks chunk steps after an episode end (bc_helper.apply_chunking_mask)."""
        x0 = torch.randn(obs.shape[0], self.flat_dim, device=obs.device, generator=generator)
        t = torch.rand(obs.shape[0], device=obs.device, generator=generator)
        return self.cfm_loss_given(obs, actions, valid, x0, t)

    def cfm_loss_given(self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor | None, x0: torch.Tensor,
                       t: torch.Tensor) -> torch.Tensor:
        """`cfm_loss` with its noise x0 [B, d] and times t [B] given (no RNG inside: compilable, train/fastpath.py)."""
        x1 = self.normalize_actions(actions)  # [B, d]
        xt = t[:, None] * x1 + (1 - t[:, None]) * x0
        err = (self.velocity(self.normalize_obs(obs), xt, t) - (x1 - x0)) ** 2  # [B, d]
        if valid is None:
            return err.mean()
        mask = valid.float().repeat_interleave(self.act_dim, dim=-1)  # [B, d]
        return (err * mask).sum() / mask.sum().clamp_min(1.0)

    @torch.no_grad()
    def sample_ode(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic policy: obs [B, Do] -> actions [B, H, Da]. `noise` [B, d] overrides x0 (DSRL); inside
        `zero_start()` x0 = 0."""
        if noise is not None:
            x0 = noise
        elif _ZERO_START.get():
            x0 = torch.zeros(obs.shape[0], self.flat_dim, device=obs.device)  # [B, d]
        else:
            x0 = torch.randn(obs.shape[0], self.flat_dim, device=obs.device, generator=generator)  # [B, d]
        return self.unnormalize_actions(ode_sample(self._velocity_fn(obs), x0, self.cfg.denoise_steps))

    def sample_ode_differentiable(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """`sample_ode` with the autograd graph kept (BPTT through the sampler, algorithm_reference §4.6):
        obs [B, Do], noise x0 [B, d] (held fixed, no gradient) -> actions [B, H, Da]. The same Euler chain as
        `ode_sample` (final clip to [-1, 1], none in between, as OGPO_public `_compute_deterministic_flow_actions`),
        written out here so that a test can compare the two."""
        velocity, K = self._velocity_fn(obs), self.cfg.denoise_steps
        x = noise.detach().float()
        t = torch.zeros(x.shape[0], device=x.device)
        for k in range(K):
            x = x + velocity(x, t + k / K) / K
        return self.unnormalize_actions(x.clamp(-1.0, 1.0))

    @torch.no_grad()
    def sample_sde(self, obs: torch.Tensor, num_samples: int = 1,
                   generator: torch.Generator | None = None, std: torch.Tensor | None = None) -> SDESample:
        """G = num_samples SDE chains per state: obs [B, Do] -> SDESample with leading [G, B].
        `std` [K] overrides the injected noise std (DPPO's exploration floor)."""
        x0, eps = self.sde_noise(obs.shape[0] * num_samples, obs.device, generator, std)
        return self.sde_given(obs, x0, eps, std)

    def sde_noise(self, rows: int, device: torch.device, generator: torch.Generator | None = None,
                  std: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The draws of `rows` SDE chains, in the sampler's order: x0 [rows, d], then eps [K, rows, d]."""
        x0 = torch.randn(rows, self.flat_dim, device=device, generator=generator)
        return x0, step_noise(rows, self.flat_dim, live_steps(self.cfg.sde, self.cfg.denoise_steps, std), device,
                              generator)

    def sde_given(self, obs: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                  std: torch.Tensor | None = None) -> SDESample:
        """`sample_sde` with its noise given: x0 [G*B, d], per-step eps [K, G*B, d] (sde.step_noise). No RNG inside,
        so it can be compiled (train/fastpath.py); G = rows / B."""
        B, K = obs.shape[0], self.cfg.denoise_steps
        G = x0.shape[0] // B
        obs_rep = obs.unsqueeze(0).expand(G, B, self.obs_dim).reshape(G * B, self.obs_dim)
        x, chain, logp = sde_chain(self._velocity_fn(obs_rep), x0, eps, K, self.cfg.sde, std=std)
        return SDESample(
            actions=self.unnormalize_actions(x).view(G, B, self.chunk_len, self.act_dim),
            chain=chain.view(G, B, K + 1, self.flat_dim),
            logp=logp.view(G, B),
        )

    def log_prob(self, obs: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-prob: obs [B, Do], chain [G, B, K+1, d] -> [G, B] (differentiable)."""
        G, B, K1, d = chain.shape
        K = K1 - 1
        obs_rep = obs.unsqueeze(0).expand(G, B, self.obs_dim).reshape(G * B, self.obs_dim)
        fn = self._velocity_fn(obs_rep, reps=K)
        return chain_log_prob(fn, chain.reshape(G * B, K1, d), K, self.cfg.sde).view(G, B)

    def step_log_probs(self, obs: torch.Tensor, chain: torch.Tensor, std: torch.Tensor | None = None) -> torch.Tensor:
        """Per-denoising-step, per-dim teacher-forced log-probs: obs [B, Do], chain [B, K+1, d] -> [B, K, d]
        (differentiable; `std` [K] as in sample_sde). Used by DPPO's per-step ratios."""
        K = chain.shape[1] - 1
        return step_log_probs(self._velocity_fn(obs, reps=K), chain, K, self.cfg.sde, std)
