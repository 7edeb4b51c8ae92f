"""QC (Q-chunking, best-of-N; Li, Zhou, Levine, NeurIPS 2025) and Best-of-N SFT, in one file.

A chunked critic ensemble Q(s, a_{t:t+H}) is trained by the unbiased H-step TD backup; the action is
argmax_{i<=N} Q(s, a_i) over N Euler-ODE samples a_i of the flow policy (each clipped to [-1, 1]), and the SAME
rule gives the TD next action a'. Reference: ColinQiyangLi/qc agents/acfql.py (`actor_type="best-of-n"`:
`sample_actions`, `critic_loss`, `actor_loss`, `get_config`) and OGPO_public ogpo/agents/qc.py (the paper's
re-implementation, `sample_actions_BON`, optional `bon_sft`); algorithm_reference §4.2, §4.6.

* Selection among the N samples is scored by the ONLINE critic (acfql.py `sample_actions` selects with
  `critic`); the TD value of the selected a' comes from the TARGET critic. Both reduce heads with `q_agg`
  (mean in both references).
* policy_target = "buffer" (QC / QC-BFN): the flow policy is trained only by CFM on replay chunks. The references
  run it on offline demos + online data (acfql) or the success buffer (OGPO, `success_buffer=True` here); in
  this harness no demos enter the online buffer, so the "behaviour flow" is fit to the online data alone.
* policy_target = "best_of_n" (Best-of-N SFT): CFM on the critic's argmax among N fresh samples of the current
  policy at each replay state (OGPO_public qc.py `bon_sft`; there it is added to the BC term with weight alpha,
  here it is the whole actor loss, as the issue defines the variant).
* No target actor, no temperature (hard argmax), constant learning rates, as acfql.

Acting modes: explore = Best-of-N with the training generators (self.act_gen, self.head_gen); bon = the same
with the evaluation generator; ode = one ODE sample of the flow policy alone (random x0, deterministic Euler);
sde = one SDE sample of the flow policy (FlowPolicy.sample_sde). Before `bon_after_updates` updates, explore
executes one ODE sample (N = 1).
Shapes: B states, N samples per state (n below), M heads, H chunk, Da, Do, d = H*Da.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from flowft.algos.base import ActMode, Algorithm, adamw, check_finite, load_bc
from flowft.critics.ensemble import Aggregation, CriticConfig, CriticEnsemble, aggregate, pick_best, polyak
from flowft.critics.targets import chunk_returns, td_target
from flowft.data.buffer import ReplayBuffer
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.registry import AlgoSpec, register_algorithm
from flowft.types import ChunkBatch
from flowft.utils.validate import INT_NONNEG, INT_POS, NONNEG, POS, RATE, UNIT, check, rules


@dataclass(frozen=True)
class QCConfig:
    policy: FlowPolicyConfig = field(default_factory=FlowPolicyConfig)
    critic: CriticConfig = field(default_factory=lambda: CriticConfig(num_heads=2))
    """Critic ensemble; acfql `num_qs` = 2, 4x512 with LayerNorm (OGPO_public's QC script: 10 heads)."""
    policy_target: Literal["buffer", "best_of_n"] = "buffer"
    """What the flow policy regresses on by CFM: replay chunks (QC) or the critic's argmax among N fresh samples
    of the current policy at each replay state (Best-of-N SFT)."""
    best_of_n: int = 32
    """N ODE samples per state for acting, the TD next action and the SFT target (acfql `actor_num_samples`;
    OGPO_public's QC scripts use 8)."""
    q_agg: Aggregation = "mean"
    """Head reduction for selection and for the TD value of a' (acfql `q_agg`)."""
    gamma: float = 0.99
    """Per-env-step discount of the chunked TD target (presets: the task's; 0.99, 0.999 transport/toolhang,
    0.95 Adroit)."""
    batch_size: int = 256
    """Replay chunks per update (critic TD step and, with policy_target=buffer, the CFM step)."""
    actor_lr: float = 3e-4
    """AdamW lr of the flow policy (constant)."""
    critic_lr: float = 3e-4
    """AdamW lr of the critic ensemble (constant)."""
    weight_decay: float = 0.0
    """acfql: plain Adam (OGPO_public's QC: 1e-5 on the critic)."""
    grad_clip: float = 1000.0
    """Global-norm clip (OGPO_public `clip_grad_norm`; acfql has none, 1000 is effectively none)."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    drop_partial_chunks: bool = True
    """Weight the TD loss by valid[-1] (acfql `critic_loss`); False uses partial chunks with exact n-step targets."""
    success_buffer: bool = False
    """policy_target=buffer: regress on success-buffer chunks once any exist (OGPO_public QC); False = acfql."""
    critic_warmup: int = 0
    """Updates that train only the critic (the actor waits). 0 in the references, whose critic is pretrained
    alongside BC; our BC checkpoints carry no critic."""
    bon_after_updates: int = 0
    """Explore with one ODE sample until this many updates (an untrained critic's argmax is a biased pick)."""

    def __post_init__(self):
        check(self, _RULES, "algo.")


_RULES = rules({("best_of_n", "batch_size"): INT_POS, ("critic_warmup", "bon_after_updates"): INT_NONNEG,
                "gamma": UNIT, "tau": RATE, ("actor_lr", "critic_lr", "grad_clip"): POS, "weight_decay": NONNEG})


class QC(Algorithm):
    name = "qc"

    def __init__(self, cfg: QCConfig, obs_dim: int, act_dim: int, chunk_len: int, device: torch.device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, chunk_len, device, seed)
        self.actor = FlowPolicy(obs_dim, act_dim, chunk_len, cfg.policy).to(device)
        self.critic = CriticEnsemble(obs_dim, act_dim, chunk_len, cfg.critic).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adamw(self.actor.parameters(), cfg.actor_lr, cfg.weight_decay)
        self.critic_opt = adamw(self.critic.parameters(), cfg.critic_lr, cfg.weight_decay)

    def init_from_bc(self, actor_state: dict[str, torch.Tensor]) -> None:
        load_bc(actor_state, (self.actor,), (self.critic, self.critic_target))

    def modules(self):
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    @torch.no_grad()
    def critic_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, actions)  # the online critic: it scores the Best-of-N candidates the policy executes

    # ------------------------------------------------------------------------------------------ best-of-N
    @torch.no_grad()
    def best_of_n(self, obs: torch.Tensor, n: int, gen: torch.Generator, head_gen: torch.Generator | None):
        """obs [B, Do] -> (argmax chunk [B, H, Da], candidates [n, B, H, Da], scores [n, B]).
        Candidates are n clipped Euler-ODE samples (x0 drawn from `gen`), scored by the online critic."""
        B = obs.shape[0]
        obs_rep = obs.unsqueeze(0).expand(n, B, self.obs_dim)  # [n, B, Do]
        cands = self.actor.sample_ode(obs_rep.reshape(n * B, self.obs_dim), generator=gen)
        cands = cands.view(n, B, self.chunk_len, self.act_dim)  # [n, B, H, Da]
        best, score = pick_best(cands, self.critic(obs_rep, cands), self.cfg.q_agg, head_gen)  # q [M, n, B]
        return best, cands, score

    @torch.no_grad()
    def act(self, obs: torch.Tensor, mode: ActMode, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = generator or self.act_gen
        head_gen = generator or self.head_gen  # an eval generator also picks heads: eval never moves training RNG
        if mode == "ode":
            return self.actor.sample_ode(obs, generator=gen)
        if mode == "sde":
            return self.actor.sample_sde(obs, 1, generator=gen).actions[0]
        if mode == "explore" and self.grad_steps < self.cfg.bon_after_updates:
            return self.actor.sample_ode(obs, generator=gen)
        return self.best_of_n(obs, self.cfg.best_of_n, gen, head_gen)[0]

    # --------------------------------------------------------------------------------------------- update
    @torch.no_grad()
    def td_targets(self, batch: ChunkBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(y [B], valid [B, H]): y = sum_i gamma^i r + gamma^n mask Qbar(s_boot, a'), a' = best-of-N at s_boot."""
        R, discount, valid = chunk_returns(batch.rewards, batch.terminals, batch.ends, self.cfg.gamma)
        next_a = self.best_of_n(batch.boot_obs, self.cfg.best_of_n, self.gen, self.head_gen)[0]  # [B, H, Da]
        next_q = aggregate(self.critic_target(batch.boot_obs, next_a), self.cfg.q_agg, self.head_gen)  # [B]
        return td_target(R, discount, next_q), valid

    @torch.no_grad()
    def regression_target(self, batch: ChunkBatch, buffer: ReplayBuffer):
        """(obs [B, Do], actions [B, H, Da], valid [B, H] or None) that the flow policy regresses on by CFM."""
        if self.cfg.policy_target == "best_of_n":
            best = self.best_of_n(batch.obs, self.cfg.best_of_n, self.gen, self.head_gen)[0]
            return batch.obs, best, None  # a sampled chunk is a whole command: no validity mask
        if self.cfg.success_buffer and buffer.can_sample(success=True):
            batch = buffer.sample(self.cfg.batch_size, success=True).to(self.device)
        return batch.obs, batch.actions, batch.valid

    def update(self, buffer: ReplayBuffer) -> dict[str, float]:
        cfg = self.cfg
        batch = buffer.sample(cfg.batch_size).to(self.device)
        # both targets from the pre-update networks, as the references' joint loss
        y, valid = self.td_targets(batch)
        train_actor = self.grad_steps >= cfg.critic_warmup
        target = self.regression_target(batch, buffer) if train_actor else None
        stats = self.critic_step(batch, y, valid)
        if target is not None:
            stats.update(self.actor_step(*target))
        self.grad_steps += 1
        check_finite(stats, f"qc update {self.grad_steps}")
        return stats

    def critic_step(self, batch: ChunkBatch, y: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        q = self.critic(batch.obs, batch.actions)  # [M, B]
        w = valid[:, -1] if self.cfg.drop_partial_chunks else torch.ones_like(y)  # [B]
        loss = (((q - y) ** 2) * w).sum(-1).div(w.sum().clamp_min(1.0)).mean()  # mean over heads (acfql)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.grad_clip, foreach=True)
        self.critic_opt.step()
        polyak(self.critic_target, self.critic, self.cfg.tau)
        return {"critic/loss": loss.item(), "critic/q_mean": q.mean().item(), "critic/grad_norm": grad_norm.item(),
                "critic/q_std_heads": q.std(0).mean().item() if q.shape[0] > 1 else 0.0,
                "critic/target_mean": y.mean().item()}

    def actor_step(self, obs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor | None) -> dict[str, float]:
        loss = self.actor.cfm_loss(obs, actions, valid, generator=self.gen)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.grad_clip, foreach=True)
        self.actor_opt.step()
        return {"actor/cfm_loss": loss.item(), "actor/grad_norm": grad_norm.item()}


# ------------------------------------------------------------------------------------------------ presets
QC_SIZES = {"tiny": 8, "mid": 16, "paper": 32}  # N per learner size (acfql: 32)
# CPU budgets: exact n-step targets for short episodes (as the OGPO CPU preset) and a faster target critic
QC_CPU_OVERRIDES: dict = {"drop_partial_chunks": False, "tau": 0.05}
# simulator tasks: let the critic learn before it picks chunks or SFT targets (OGPO's SIM_ACTING reason)
QC_SIM_CPU_OVERRIDES: dict = {"bon_after_updates": 1000, "critic_warmup": 1000}
QC_TASK_OVERRIDES: dict[str, dict] = {"toy": {"critic_lr": 1e-3}}


def qc_config(policy_target: Literal["buffer", "best_of_n"], task: str, size: str) -> QCConfig:
    from flowft.presets import SIZES, policy_config
    from flowft.registry import get_task

    s, spec = SIZES[size], get_task(task)
    cfg = QCConfig(policy=policy_config(task, size), critic=CriticConfig(num_heads=s["heads"], hidden=s["hidden"]),
                   policy_target=policy_target, best_of_n=QC_SIZES[size], gamma=spec.gamma, batch_size=s["batch"])
    if size != "paper":
        sim = QC_SIM_CPU_OVERRIDES if spec.simulator else {}  # user tasks default to simulator settings
        cfg = replace(cfg, **{**QC_CPU_OVERRIDES, **sim, **QC_TASK_OVERRIDES.get(task, {})})
    return cfg


register_algorithm("qc", AlgoSpec(
    QC, QCConfig, lambda task, size: qc_config("buffer", task, size),
    "QC: chunked critic, best-of-N ODE samples picked by the critic (acting and TD); CFM on replay chunks",
    headline="bon"))
register_algorithm("bon-sft", AlgoSpec(
    QC, QCConfig, lambda task, size: qc_config("best_of_n", task, size),
    "Best-of-N SFT: QC whose flow policy regresses (CFM) on the critic's argmax among its own N samples",
    headline="bon"))
