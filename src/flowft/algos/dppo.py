"""DPPO: Diffusion Policy Policy Optimization (Ren et al., arXiv 2409.00588), for flow policies.

On-policy PPO over the two-level MDP of env chunk-decisions x denoising steps (algorithm_reference §3;
irom-princeton/dppo model/diffusion/diffusion_ppo.py::loss, agent/finetune/train_ppo_diffusion_agent.py). Each
Euler-Maruyama transition x_k -> x_{k+1} of the flow's SDE chain is a Gaussian policy step
(policies/sde.py::transition_log_prob) whose std is floored at `min_std` (DPPO's min_sampling_/min_logprob_
denoising_std: extra exploration, no marginal correction, §2.5). A V(s) critic gives GAE over decisions (the shared
loop's on-policy mode, train/onpolicy.py); advantages are normalised per minibatch and discounted by
gamma_denoising^(K-k-1) inside the chain; ratios are per denoising step with the exponential clip schedule; 0.5*MSE
value loss; `update_epochs` passes over random minibatches of (decision, denoising step) pairs with an approx-KL
stop. Flow specifics as ReinFlow (ReinFlow model/flow/ft_ppo/ppoflow.py: Euler steps, intermediate mean clipping,
noise per step) but with DPPO's per-step ratio instead of the whole-chain one.

Acting modes: explore = SDE with the noise floor from the current actor (training RNG act_gen, via act_rollout);
ode = the deterministic Euler policy (the headline, deployed policy); sde = one noisy SDE sample as explore (from the
given generator); bon = sde (DPPO has no action critic).
Deliberate deviations: every denoising step is fine-tuned (the reference fine-tunes the last 10 of 20 DDPM steps;
our flows have K = 10 Euler steps, so the trainable copy is the whole actor and no frozen base is kept); no BC loss
(reference default use_bc_loss=False); truncated episodes bootstrap with V(final obs) (objectives/gae.py).
Shapes: N envs, D decisions, P (decision, step) pairs of a minibatch, K steps, H chunk, Da, Do, d = H*Da.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from flowft.algos.base import ActMode, Algorithm, adamw, check_finite
from flowft.objectives.gae import RunningReturnScaler, gae
from flowft.objectives.ppo import ppo_clip_loss, ratio_stats
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.policies.networks import Activation, mlp
from flowft.policies.normalizer import Normalizer
from flowft.policies.sde import sigma_schedule, transition_log_prob
from flowft.train.onpolicy import RolloutStorage
from flowft.utils.validate import FINITE, INT_NONNEG, INT_POS, NONNEG, POS, UNIT, WIDTHS, check, number, rules


@dataclass(frozen=True)
class DPPOConfig:
    policy: FlowPolicyConfig = field(default_factory=FlowPolicyConfig)
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """V(s) MLP widths (reference CriticObs [256]x3, Mish)."""
    critic_activation: Activation = "mish"
    """Nonlinearity of the V(s) MLP (relu, gelu, silu, mish, tanh)."""
    gamma: float = 0.999
    """Discount per decision (one executed chunk), reference train.gamma."""
    gae_lambda: float = 0.95
    """GAE lambda over decisions (0 = one-step TD advantages, 1 = Monte-Carlo returns minus V)."""
    rollout_steps: int = 1200
    """Env steps per env per rollout: n_steps 300 decisions x act_steps 4 (robomimic lift/can configs)."""
    update_epochs: int = 10
    """Passes over the rollout per update (5 for transport)."""
    minibatch_size: int = 7500
    """(decision, denoising step) pairs per gradient step (batch_size; 10000 square/transport)."""
    actor_lr: float = 1e-4
    """AdamW lr of the flow policy (constant)."""
    critic_lr: float = 1e-3
    """AdamW lr of the value net (constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay of the actor and the value net (0 = none)."""
    vf_coef: float = 0.5
    """Weight of the value loss 0.5*(V - return)^2 in the minibatch loss (the value net has its own optimiser,
    so it scales only the value net's gradient)."""
    clip_eps: float = 0.01
    """Clip of the last denoising step's ratio (clip_ploss_coef)."""
    clip_eps_base: float = 0.001
    """Clip of the first (noisiest) step (clip_ploss_coef_base); exponential interpolation in between."""
    clip_eps_rate: float = 3.0
    """clip_ploss_coef_rate of that interpolation."""
    gamma_denoising: float = 0.99
    """Advantage discount inside the chain: denoising step k is weighted gamma_denoising^(K-k-1)."""
    min_std: float = 0.1
    """Noise floor on every denoising step's std, for sampling and for log-probs (min_sampling_denoising_std =
    min_logprob_denoising_std)."""
    logprob_min: float = -5.0
    """Lower clamp of the per-dimension denoising-step log-probs (< logprob_max)."""
    logprob_max: float = 2.0
    """Per-dimension log-probs are clamped to [logprob_min, logprob_max] before the mean over (H, Da)."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    target_kl: float | None = 1.0
    """Stop this update's epochs once a minibatch's approx KL exceeds it (None: never)."""
    critic_warmup_rollouts: int = 2
    """The first rollouts train only the critic (n_critic_warmup_itr)."""
    bootstrap_truncated: bool = True
    """Bootstrap time-limit truncations with V(final obs). False treats them as terminal: for tasks whose time
    limit is part of the task but not in the observation (the toy), where bootstrapping drifts V towards the
    infinite-horizon value."""
    reward_scale_running: bool = True
    """Divide rewards by the running std of discounted returns (objectives/gae.RunningReturnScaler)."""
    max_grad_norm: float | None = None
    """Actor grad-norm clip (unset in the robomimic configs)."""

    def __post_init__(self):
        check(self, _RULES, "algo.", lambda c, flag: [(c.logprob_min < c.logprob_max, "logprob_min",
                                                       f"must be < {flag('logprob_max')} ({c.logprob_max})")])


_RULES = rules({  # clip_eps_rate: the interpolation divides by exp(rate) - 1
    ("rollout_steps", "update_epochs", "minibatch_size"): INT_POS, "critic_warmup_rollouts": INT_NONNEG,
    ("gamma", "gae_lambda", "gamma_denoising"): UNIT, "critic_hidden": WIDTHS, ("logprob_min", "logprob_max"): FINITE,
    ("actor_lr", "critic_lr", "clip_eps", "clip_eps_base", "clip_eps_rate", "min_std"): POS,
    ("weight_decay", "vf_coef"): NONNEG, "target_kl": number(gt=0, none="never stop early"),
    "max_grad_norm": number(gt=0, none="no clip")})


class ValueNet(nn.Module):
    """V(s): obs [B, Do] (raw; normalised with the BC obs statistics) -> [B]."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], activation: Activation):
        super().__init__()
        self.obs_normalizer = Normalizer(obs_dim)
        self.net = mlp(obs_dim, hidden, 1, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.obs_normalizer(obs.float())).squeeze(-1)


class DPPO(Algorithm):
    name = "dppo"
    on_policy = True

    def __init__(self, cfg: DPPOConfig, obs_dim: int, act_dim: int, chunk_len: int, device: torch.device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, chunk_len, device, seed)
        self.actor = FlowPolicy(obs_dim, act_dim, chunk_len, cfg.policy).to(device)
        self.critic = ValueNet(obs_dim, cfg.critic_hidden, cfg.critic_activation).to(device)
        self.actor_opt = adamw(self.actor.parameters(), cfg.actor_lr, cfg.weight_decay)
        self.critic_opt = adamw(self.critic.parameters(), cfg.critic_lr, cfg.weight_decay)
        K = self.K = cfg.policy.denoise_steps
        self.sig = sigma_schedule(cfg.policy.sde, K, device)  # [K] the schedule's std (drift correction)
        self.std = self.sig.clamp_min(cfg.min_std)  # [K] transition std with the exploration floor
        k = torch.arange(K, device=device, dtype=torch.float32)
        frac = k / max(K - 1, 1)  # 0 at the noisiest step, 1 at the last
        grow = (torch.exp(cfg.clip_eps_rate * frac) - 1) / (math.exp(cfg.clip_eps_rate) - 1)
        # per-step clip [K]: clip_eps_base at the noisiest step growing exponentially to clip_eps at the last
        self.clip = cfg.clip_eps_base + (cfg.clip_eps - cfg.clip_eps_base) * grow if K > 1 else k * 0 + cfg.clip_eps
        self.adv_discount = cfg.gamma_denoising ** (K - 1 - k)  # [K]
        self.rollout_steps = cfg.rollout_steps
        self.rollouts = 0
        self.scaler = RunningReturnScaler(cfg.gamma)

    def init_from_bc(self, actor_state: dict[str, torch.Tensor]) -> None:
        """Actor = BC weights; the critic normalises observations with the BC statistics."""
        self.actor.load_state_dict(actor_state)
        self.critic.obs_normalizer.load_state_dict(self.actor.obs_normalizer.state_dict())

    def modules(self):
        return {"actor": self.actor, "critic": self.critic}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def extra_state(self) -> dict:
        return {"grad_steps": self.grad_steps, "rollouts": self.rollouts, "scaler": self.scaler.state()}

    def load_extra_state(self, state: dict) -> None:
        self.grad_steps, self.rollouts = int(state["grad_steps"]), int(state["rollouts"])
        self.scaler.load_state(state["scaler"])

    # ------------------------------------------------------------------------------------------------ act
    @torch.no_grad()
    def act(self, obs: torch.Tensor, mode: ActMode, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = generator or self.act_gen
        if mode == "ode":
            return self.actor.sample_ode(obs, generator=gen)
        return self.actor.sample_sde(obs, 1, generator=gen, std=self.std).actions[0]  # explore / sde / bon

    def _reduce(self, lp: torch.Tensor) -> torch.Tensor:
        """Per-dim log-probs [..., d] -> clamped mean over (H, Da) [...] (diffusion_ppo.py::loss)."""
        return lp.clamp(self.cfg.logprob_min, self.cfg.logprob_max).mean(-1)

    @torch.no_grad()
    def act_rollout(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.actor.sample_sde(obs, 1, generator=self.act_gen, std=self.std)
        chain = s.chain[0]  # [N, K+1, d]
        logp = self._reduce(self.actor.step_log_probs(obs, chain, self.std))  # [N, K] old per-step log-probs
        return s.actions[0], {"chain": chain, "logp": logp}

    # --------------------------------------------------------------------------------------------- update
    def update(self, buffer) -> dict[str, float]:
        raise NotImplementedError("DPPO is on-policy: the shared loop calls update_rollout")

    @torch.no_grad()
    def _advantages(self, data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        r = data.rewards  # [D]
        if cfg.reward_scale_running:
            scaled = self.scaler(r.cpu().double().numpy(), data.env.cpu().numpy(), data.ended.cpu().numpy())
            r = torch.as_tensor(scaled, dtype=torch.float32, device=self.device)
        values = self.critic(data.obs)  # [D]
        terminal = data.terminated if cfg.bootstrap_truncated else data.ended  # [D] no bootstrap after these
        adv, ret = gae(r, values, self.critic(data.next_obs), terminal, data.cut, cfg.gamma, cfg.gae_lambda)
        return adv, ret, values

    def update_rollout(self, rollout: RolloutStorage) -> dict[str, float]:
        cfg, K = self.cfg, self.K
        data = rollout.batch(self.device)
        adv, ret, values = self._advantages(data)  # [D] each
        P = adv.shape[0] * K
        train_actor = self.rollouts >= cfg.critic_warmup_rollouts
        stats: dict[str, list[float]] = {}
        kl_stop = False
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(P, generator=self.gen, device=self.device)
            for start in range(0, P, cfg.minibatch_size):
                idx = perm[start:start + cfg.minibatch_size]  # [P'] flat (decision, step) indices
                st = self._minibatch(data, adv, ret, idx // K, idx % K, train_actor)
                for key, v in st.items():
                    stats.setdefault(key, []).append(v)
                self.grad_steps += 1
                if train_actor and cfg.target_kl is not None and st["actor/approx_kl"] > cfg.target_kl:
                    kl_stop = True
                    break
            if kl_stop:
                break
        self.rollouts += 1
        out = {key: float(np.mean(v)) for key, v in stats.items()}
        var_ret = ret.var().item()
        out.update({"critic/explained_var": 1.0 - (ret - values).var().item() / var_ret if var_ret > 0 else 0.0,
                    "critic/value_mean": values.mean().item(), "critic/return_mean": ret.mean().item(),
                    "actor/kl_stop": float(kl_stop), "rollout/decisions": float(adv.shape[0]),
                    "rollout/reward_scale": 1.0 / math.sqrt(self.scaler.var + self.scaler.eps)})
        check_finite(out, f"dppo update_rollout {self.rollouts}")
        return out

    def _minibatch(self, data, adv, ret, b, k, train_actor: bool) -> dict[str, float]:
        """One gradient step on P pairs: decision indices b [P], denoising steps k [P]."""
        cfg = self.cfg
        obs = data.obs[b]  # [P, Do]
        v_loss = 0.5 * ((self.critic(obs) - ret[b]) ** 2).mean()
        loss, stats = cfg.vf_coef * v_loss, {"critic/v_loss": v_loss.item()}
        if train_actor:
            chain = data.extras["chain"]  # [D, K+1, d]
            x, x_next, t = chain[b, k], chain[b, k + 1], k.float() / self.K  # [P, d], [P, d], [P]
            v = self.actor.velocity(self.actor.normalize_obs(obs), x, t)  # [P, d]
            lp = self._reduce(transition_log_prob(v, x, x_next, t[:, None], self.sig[k, None], self.std[k, None],
                                                  self.K, cfg.policy.sde))  # [P]
            old = data.extras["logp"][b, k]  # [P]
            a = adv[b]
            if cfg.norm_adv and a.numel() > 1:
                a = (a - a.mean()) / (a.std() + 1e-8)
            a = a * self.adv_discount[k]
            pg = ppo_clip_loss(lp, old, a, self.clip[k])  # per-pair clip from the denoising-step schedule
            loss = loss + pg
            stats.update({"actor/pg_loss": pg.item(),
                          **{f"actor/{n}": s for n, s in ratio_stats(lp.detach() - old, self.clip[k]).items()}})
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        if train_actor:
            if cfg.max_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
                stats["actor/grad_norm"] = norm.item()
            self.actor_opt.step()
        return stats


# ------------------------------------------------------------------------------------------------ presets
# CPU deviations (toy / tiny / mid budgets are ~100x shorter than the reference's 5-30M env steps): short rollouts,
# small minibatches so each rollout still gives tens of gradient steps.
CPU_DPPO: dict = {"rollout_steps": 200, "minibatch_size": 1000}
TASK_DPPO: dict[str, dict] = {
    # toy (12-step episodes, K = 5): a 20x wider trust region and 10x actor lr; with the reference's 0.001-0.01
    # clips the policy barely moves in 15 rollouts (measured: 0.25 -> 0.25 ODE success in 12k steps; notes/dppo.md)
    "toy": {"rollout_steps": 50, "minibatch_size": 500, "clip_eps": 0.2, "clip_eps_base": 0.02, "actor_lr": 1e-3,
            "critic_warmup_rollouts": 1, "gamma": 0.99},
}


def make_config(task: str, size: str) -> DPPOConfig:
    from flowft.presets import SIZES, policy_config

    cfg = DPPOConfig(policy=policy_config(task, size))
    if size != "paper":
        cfg = replace(cfg, critic_hidden=SIZES[size]["hidden"], **{**CPU_DPPO, **TASK_DPPO.get(task, {})})
    return cfg


def run_overrides(task: str, size: str) -> dict:
    """DPPO collects with many parallel envs (reference n_envs = 50)."""
    if size == "paper":
        return {"num_envs": 50}
    return {"num_envs": 16 if task == "toy" else 8}


def _register() -> None:
    from flowft.registry import AlgoSpec, register_algorithm

    register_algorithm("dppo", AlgoSpec(DPPO, DPPOConfig, make_config,
                                        "DPPO: on-policy PPO over env chunk-steps x denoising steps, GAE, V(s) critic",
                                        headline="ode", run_overrides=run_overrides))


_register()
