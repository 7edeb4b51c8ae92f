"""DSRL: diffusion steering via RL over the latent noise (Wagenmaker et al., arXiv 2506.15799), noise-aliased.

The BC flow policy is FROZEN. A tanh-Gaussian noise actor pi_W(w|s), w in [-b, b]^d, is trained SAC-style and the
executed chunk is a = ODE(pi, s, w) (FlowPolicy.sample_ode with x0 = w): every action the env sees comes out of the
frozen flow policy, its own final [-1, 1] clip included; DSRL itself clips nothing.

DSRL-NA (the reference default, `algorithm: dsrl_na`), one update = one SAC step (+ periodic distillation):
  Q^A(s, a)  CriticEnsemble on env-space chunks, chunked TD on buffer chunks; next action a' = ODE(pi, s', w'),
             w' ~ pi_W(s'); soft value agg_m Qbar^A(s', a') - alpha log pi_W(w'|s').
  Q^W(s, w)  a second CriticEnsemble whose "action" input is w / b reshaped to [H, Da] (d = H*Da, so the
             act_dim x chunk_len slot of the ensemble holds the noise); head m regresses onto Q^A_m(s, ODE(pi, s, w))
             for w ~ N(0, I), unclipped (`update_noise_critic`).
  pi_W       maximise agg_m Q^W(s, w) - alpha log pi_W(w|s); alpha tuned to a target entropy.
Reference: ajwagen's SB3 fork `stable_baselines3/dsrl/dsrl.py` (DSRL.train, update_noise_critic, _sample_action),
`opatil-rai/dsrl` train_dsrl.py + cfg/robomimic/dsrl_can.yaml; algorithm_reference §4.1.

Acting modes: explore = w ~ pi_W(s) from act_gen (before the first update w ~ N(0, I), i.e. the BC policy itself, as
the reference's `init_rollout_steps` base-policy rollouts); ode = the mode w = b tanh(mu(s)); sde = one w ~ pi_W(s);
bon = sde (DSRL has no critic selection at test time). Every mode ends in the deterministic ODE of the frozen flow.

Plain DSRL-SAC (variant="sac") is NOT supported: it fits Q(s, w) on the executed noises, but the shared replay buffer
stores env actions only, and w cannot be recovered from a: the Euler map ends in a clip to [-1, 1] (many w give the
same a) and is not invertible in closed form. It would need a private buffer of w next to the shared one.
Shapes: B states, M heads, K steps, H chunk, Da, Do, d = H*Da, N envs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from flowft.algos.base import ActMode, Algorithm, check_finite, load_bc
from flowft.critics.ensemble import Aggregation, CriticConfig, CriticEnsemble, aggregate, polyak
from flowft.critics.targets import chunk_returns, td_target
from flowft.data.buffer import ReplayBuffer
from flowft.objectives.sac import Temperature, sac_actor_loss, soft_next_value
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.policies.gaussian import GaussianConfig, TanhGaussian
from flowft.registry import AlgoSpec, register_algorithm
from flowft.utils.validate import FINITE, INT_POS, POS, RATE, UNIT, check, rules

_REF_HIDDEN = (2048, 2048, 2048)  # dsrl_can.yaml: layer_size 2048, num_layers 3, activation Tanh


@dataclass(frozen=True)
class DSRLConfig:
    policy: FlowPolicyConfig = field(default_factory=FlowPolicyConfig)
    """Architecture of the frozen BC flow policy (must match the BC checkpoint)."""
    critic: CriticConfig = field(default_factory=lambda: CriticConfig(num_heads=2, hidden=_REF_HIDDEN,
                                                                      activation="tanh"))
    """Shape of both Q^A(s, a) and Q^W(s, w); head m of Q^W is distilled from head m of Q^A (`n_critics` 2,
    3x2048 Tanh with LayerNorm in dsrl_can.yaml)."""
    noise_actor: GaussianConfig = field(default_factory=lambda: GaussianConfig(hidden=_REF_HIDDEN, activation="tanh"))
    """pi_W over the whole chunk noise (d = H*Da), log-std init 0 as the reference (no LayerNorm in our head)."""
    variant: Literal["na", "sac"] = "na"
    """na: DSRL-NA (reference default). sac: plain DSRL-SAC on noise transitions, not supported (module docstring)."""
    noise_bound: float = 1.5
    """b: pi_W outputs w in [-b, b]^d (`action_magnitude`; 1.0 in OGPO_public's re-implementation)."""
    gamma: float = 0.99
    """Per-env-step discount of the chunked soft TD target of Q^A (presets: the task's)."""
    batch_size: int = 256
    """Replay chunks per SAC update and per distillation step."""
    actor_lr: float = 3e-4
    """Adam lr of the noise policy pi_W (constant)."""
    critic_lr: float = 3e-4
    """Adam lr of the action critic Q^A (constant)."""
    noise_critic_lr: float = 3e-4
    """Adam lr of the noise critic Q^W (constant)."""
    temperature_lr: float = 3e-4
    """SB3 uses one learning rate (3e-4) for actor, critics and the entropy coefficient."""
    init_temperature: float = 1.0
    """Initial alpha (SB3 ent_coef='auto')."""
    target_entropy: float = 0.0
    """Target entropy of w / b in the unit box, SB3's convention (`target_ent` 0 in dsrl_can.yaml). The logged
    log-probs are of w / b too, so alpha's dynamics match the reference exactly."""
    tau: float = 0.005
    """Polyak rate of the target Q^A, after each update (1 = copy)."""
    critic_agg: Aggregation = "min"
    """Head aggregation for the Q^A backup and the pi_W objective on Q^W (`critic_backup_combine_type`)."""
    noise_critic_every: int = 20
    """Updates between two rounds of Q^W distillation (each round: noise_critic_steps steps)."""
    noise_critic_steps: int = 10
    """Every `noise_critic_every` updates, `noise_critic_steps` distillation steps on fresh batches (reference: 10
    after each call of 20 SAC steps, i.e. after every vec-env step at utd 20)."""
    base_policy_warmup: bool = True
    """Explore with w ~ N(0, I) (the BC policy itself) until the first update (`init_rollout_steps`), instead of
    with the untrained pi_W."""

    def __post_init__(self):
        check(self, _RULES, "algo.", lambda c, flag: [(c.variant == "na", "variant", "is not supported: plain "
              "DSRL-SAC needs the executed noises w in the replay buffer, which stores env actions only; use na")])


_RULES = rules({("batch_size", "noise_critic_every", "noise_critic_steps"): INT_POS, "gamma": UNIT, "tau": RATE,
                ("noise_bound", "actor_lr", "critic_lr", "noise_critic_lr", "temperature_lr", "init_temperature"): POS,
                "target_entropy": FINITE})


class DSRL(Algorithm):
    name = "dsrl"

    def __init__(self, cfg: DSRLConfig, obs_dim: int, act_dim: int, chunk_len: int, device: torch.device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, chunk_len, device, seed)
        self.d = chunk_len * act_dim
        # frozen BC policy: no optimiser, no gradients; it only decodes noises
        self.actor = FlowPolicy(obs_dim, act_dim, chunk_len, cfg.policy).to(device).requires_grad_(False)
        self.noise_actor = TanhGaussian(obs_dim, self.d, cfg.noise_actor, cfg.noise_bound).to(device)
        self.critic = CriticEnsemble(obs_dim, act_dim, chunk_len, cfg.critic).to(device)  # Q^A(s, a)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.noise_critic = CriticEnsemble(obs_dim, act_dim, chunk_len, cfg.critic).to(device)  # Q^W(s, w)
        self.temperature = Temperature(cfg.init_temperature).to(device)
        self.actor_opt = torch.optim.Adam(self.noise_actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.noise_critic_opt = torch.optim.Adam(self.noise_critic.parameters(), lr=cfg.noise_critic_lr)
        self.temp_opt = torch.optim.Adam(self.temperature.parameters(), lr=cfg.temperature_lr)
        # TanhGaussian's log-prob is the density of w; SB3 reports that of w / b in the unit box: + d log b
        self.logp_shift = self.d * math.log(cfg.noise_bound)

    def init_from_bc(self, actor_state: dict[str, torch.Tensor]) -> None:
        """Frozen policy = BC weights; Q^A shares its normalisers; Q^W only the obs one (its input is w / b)."""
        load_bc(actor_state, (self.actor,), (self.critic, self.critic_target))
        self.noise_critic.obs_normalizer.load_state_dict(self.actor.obs_normalizer.state_dict())

    def modules(self):
        return {"actor": self.actor, "noise_actor": self.noise_actor, "critic": self.critic,
                "critic_target": self.critic_target, "noise_critic": self.noise_critic,
                "temperature": self.temperature}

    def optimizers(self):
        return {"noise_actor": self.actor_opt, "critic": self.critic_opt, "noise_critic": self.noise_critic_opt,
                "temperature": self.temp_opt}

    @torch.no_grad()
    def critic_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        # the online action critic: the noise critic that the noise policy follows is distilled from it
        return self.critic(obs, actions)

    # ------------------------------------------------------------------------------------------- pieces
    def sample_noise(self, obs: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """w ~ pi_W(s): obs [B, Do] raw -> w [B, d] in [-b, b], log-density of w / b [B] (reparameterised)."""
        w, logp = self.noise_actor.sample(self.actor.normalize_obs(obs), generator)
        return w, logp + self.logp_shift

    def q_noise(self, obs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Q^W: obs [..., Do], w [..., d] -> [M, ...]; w / b as SB3's scale_action feeds the noise critic."""
        return self.noise_critic(obs, (w / self.cfg.noise_bound).unflatten(-1, (self.chunk_len, self.act_dim)))

    def distill_loss(self, obs: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise-aliasing regression: obs [B, Do], w [B, d] -> (loss, target [M, B]), target_m = Q^A_m(s, ODE(s, w))
        from the online action critic, per head (update_noise_critic: 0.5 * sum_m MSE)."""
        with torch.no_grad():
            target = self.critic(obs, self.actor.sample_ode(obs, noise=w))  # [M, B]
        pred = self.q_noise(obs, w)  # [M, B]
        return 0.5 * ((pred - target) ** 2).mean(-1).sum(), target

    # ---------------------------------------------------------------------------------------------- act
    @torch.no_grad()
    def act(self, obs: torch.Tensor, mode: ActMode, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = generator or self.act_gen
        if mode == "ode":
            w = self.noise_actor.mode(self.actor.normalize_obs(obs))  # [N, d]
        elif mode == "explore" and self.cfg.base_policy_warmup and self.grad_steps == 0:
            return self.actor.sample_ode(obs, generator=gen)  # w ~ N(0, I): the BC policy's own rollouts
        else:  # explore, sde, bon
            w = self.sample_noise(obs, gen)[0]  # [N, d]
        return self.actor.sample_ode(obs, noise=w)  # [N, H, Da]

    # ------------------------------------------------------------------------------------------- update
    def update(self, buffer: ReplayBuffer) -> dict[str, float]:
        cfg = self.cfg
        batch = buffer.sample(cfg.batch_size).to(self.device)
        # as DSRL.train: pi_W's sample and alpha are taken before this update's temperature step
        w, logp = self.sample_noise(batch.obs, self.gen)  # [B, d], [B]
        alpha = self.temperature.alpha
        temp_loss = self.temperature.loss(logp, cfg.target_entropy)
        self.temp_opt.zero_grad(set_to_none=True)
        temp_loss.backward()
        self.temp_opt.step()
        stats = self.critic_step(batch, alpha)
        stats.update(self.actor_step(batch.obs, w, logp, alpha))
        polyak(self.critic_target, self.critic, cfg.tau)
        if (self.grad_steps + 1) % cfg.noise_critic_every == 0:
            for _ in range(cfg.noise_critic_steps):  # fresh batch per step, as the reference
                stats.update(self.distill_step(buffer.sample(cfg.batch_size).obs.to(self.device)))
        stats.update({"actor/alpha": alpha.item(), "actor/temperature_loss": temp_loss.item()})
        self.grad_steps += 1
        check_finite(stats, f"dsrl update {self.grad_steps}")
        return stats

    def critic_step(self, batch, alpha: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            R, discount, _ = chunk_returns(batch.rewards, batch.terminals, batch.ends, cfg.gamma)  # [B], [B]
            next_w, next_logp = self.sample_noise(batch.boot_obs, self.gen)  # [B, d], [B]
            next_a = self.actor.sample_ode(batch.boot_obs, noise=next_w)  # [B, H, Da]
            next_q = aggregate(self.critic_target(batch.boot_obs, next_a), cfg.critic_agg, self.head_gen)  # [B]
            y = td_target(R, discount, soft_next_value(next_q, next_logp, alpha))  # [B]
        q = self.critic(batch.obs, batch.actions)  # [M, B]
        loss = 0.5 * ((q - y) ** 2).mean(-1).sum()  # 0.5 * sum over heads of each head's MSE (DSRL.train)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        return {"critic/loss": loss.item(), "critic/q_mean": q.mean().item(), "critic/target_mean": y.mean().item(),
                "critic/q_std_heads": q.std(0).mean().item()}

    def actor_step(self, obs: torch.Tensor, w: torch.Tensor, logp: torch.Tensor, alpha: torch.Tensor) -> dict:
        q = aggregate(self.q_noise(obs, w), self.cfg.critic_agg, self.head_gen)  # [B], differentiable in w
        loss = sac_actor_loss(q, logp, alpha)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()  # also leaves gradients on Q^W; distill_step clears them before its own step
        self.actor_opt.step()
        b = self.cfg.noise_bound
        return {"actor/loss": loss.item(), "actor/q_noise": q.mean().item(), "actor/logp": logp.mean().item(),
                "actor/w_abs_mean": w.abs().mean().item(),
                "actor/w_saturated_frac": (w.abs() > 0.9 * b).float().mean().item()}

    def distill_step(self, obs: torch.Tensor) -> dict[str, float]:
        w = torch.randn(obs.shape[0], self.d, device=obs.device, generator=self.gen)  # [B, d] ~ N(0, I), unclipped
        loss, target = self.distill_loss(obs, w)
        self.noise_critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.noise_critic_opt.step()
        return {"critic/distill_loss": loss.item(), "critic/distill_target_mean": target.mean().item()}


# CPU presets: the reference's networks are 3x2048; smaller sizes take the shared widths (tanh, as the reference).
# Distillation every 2 updates, 1 step (the reference's 10-per-20 ratio with a fresher Q^W between actor steps).
# alpha starts at 0.05, not 1: with -1/step rewards, alpha = 1 times the initial ~5 nats of noise entropy swamps the
# reward for the whole ~2.5k-update toy budget (Q rose to +10, ODE success 0.25 -> 0; 0.01 -> 0.56, 0.05 -> 0.73;
# notes/dsrl.md). The reference runs millions of updates, in which alpha has time to fall.
CPU_OVERRIDES: dict = {"noise_critic_every": 2, "noise_critic_steps": 1, "init_temperature": 0.05}


def dsrl_config(task: str, size: str) -> DSRLConfig:
    from flowft.presets import SIZES, policy_config
    from flowft.registry import get_task

    spec = get_task(task)
    hidden = _REF_HIDDEN if size == "paper" else SIZES[size]["hidden"]
    cfg = DSRLConfig(
        policy=policy_config(task, size),
        critic=CriticConfig(num_heads=2, hidden=hidden, activation="tanh"),
        noise_actor=GaussianConfig(hidden=hidden, activation="tanh"),
        gamma=spec.gamma, batch_size=SIZES[size]["batch"],
    )
    return cfg if size == "paper" else replace(cfg, **CPU_OVERRIDES)


register_algorithm("dsrl", AlgoSpec(
    DSRL, DSRLConfig, dsrl_config,
    "DSRL-NA: frozen flow policy, SAC over its initial noise (action critic + distilled noise critic)",
    headline="ode"))
