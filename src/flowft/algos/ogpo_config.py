"""OGPOConfig: every knob of OGPO, OGPO+, OGPO+CA and the policy-extraction ablations (algos/ogpo.py), with the
range of each value, checked when the config is built (utils/validate.py). A module of its own so that ogpo.py stays
one readable algorithm file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flowft.critics.ensemble import Aggregation, CriticConfig
from flowft.objectives.advantages import AdvantageKind
from flowft.objectives.awr import AWRMode
from flowft.policies.flow import FlowPolicyConfig
from flowft.utils.validate import INT_NONNEG, INT_POS, NONNEG, POS, RATE, UNIT, check, integer, number, rules


@dataclass(frozen=True)
class OGPOConfig:
    policy: FlowPolicyConfig = field(default_factory=FlowPolicyConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    gamma: float = 0.99
    """Discount (0.99 square/kitchen, 0.999 transport/toolhang, 0.95 Adroit)."""
    batch_size: int = 256
    """Replay chunks per update; the critic uses all of them, the actor the first `ppo_batch_size` states."""
    ppo_batch_size: int = 256
    """States of each replay batch the actor objective uses (the first ones; <= batch_size)."""
    group_size: int = 32
    """G imagined SDE chains per state (`group_num_samples`)."""
    clip_eps: float = 0.01
    """PPO clip on the normalised whole-chain ratio."""
    advantage: AdvantageKind = "conservative"
    """vanilla (OGPO) | conservative sign-consensus (OGPO+CA) | penultimate."""
    normalize_group: bool = False
    """GRPO-style division by the group std (off in OGPO; the ablation says it hurts)."""
    adv_clip_min: float | None = None
    """Lower clip on advantages (0 gives OGPO-NN, 'no negative')."""
    target_agg: Aggregation = "mean"
    """Critic TD target aggregation over heads (mean in OGPO; min is the pessimistic ablation)."""
    bc_coeff: float = 1.0
    """lambda_BC of the flow-matching cloning term (OGPO+); 0 disables it."""
    bc_source: Literal["success", "replay"] = "success"
    """success: success-buffer batch, falling back to the replay batch before any success (the reference)."""
    bon_distill_coeff: float = 0.0
    """lambda of Best-of-N distillation: a flow-matching term on the chunk Best-of-N acting would execute at each
    actor state, i.e. the `bon_agg` target-Q argmax among the first `best_of_n` of the actor step's imagined group
    (EMA-actor samples). It moves the flow itself toward the critic's pick (the QC references' `bon_sft`); it starts
    with Best-of-N acting (`bon_after_updates`). 0 = off (the OGPO reference); the CPU Can preset uses 3.0."""
    best_of_n: int = 8
    """Acting: N SDE samples from the target actor, execute argmax of `bon_agg` target Q (1 = plain SDE)."""
    bon_agg: Aggregation = "subsample"
    """Best-of-N score over heads: subsample = min over one random pair per call; subsample_each = an independent
    pair per (state, candidate), drawn with replacement (the reference; the paper preset uses it)."""
    bon_after_updates: int = 0
    """Act with one SDE sample until this many updates, then Best-of-N. 0 = Best-of-N from the start (reference).
    An untrained critic's argmax picks worse chunks than a plain SDE sample (Lift: 0.16-0.38 vs 0.84 success), so
    the CPU presets wait for the critic (docs/tasks.md)."""
    actor_lr: float = 4.5e-5
    """Peak actor lr of the restarting warmup-cosine schedule (AdamW), counted in actor updates."""
    actor_lr_floor: float = 2e-5
    """Actor lr at the start and end of each schedule cycle (<= actor_lr; = actor_lr: constant lr)."""
    lr_warmup: int = 2000
    """Actor updates of each cycle's linear warm-up from actor_lr_floor to actor_lr (<= lr_cycle)."""
    lr_cycle: int = 50_000
    """Actor updates per schedule cycle: warm-up, then cosine decay back to actor_lr_floor, then restart."""
    lr_restart: bool = True
    """Restart the schedule after each cycle (the reference), or (False) hold actor_lr_floor after the first cycle.
    At UTD 1 the Can preset's restart at 50k actor updates was followed by clipped chains 0.05 -> 0.23 and ODE success
    0.92 -> 0.73 (seed 0, docs/results.md section 9)."""
    critic_lr: float = 4.5e-5
    """Online critic lr (the authors' code gives the critic the actor's lr too)."""
    weight_decay: float = 1e-5
    """AdamW weight decay of the actor and the critic (0 = none)."""
    grad_clip: float = 1000.0
    """Global gradient-norm clip of each actor and critic step (1000 is effectively none)."""
    tau_actor: float = 0.005
    """Polyak rate of the EMA (target) actor that imagines the chains, after each actor update (1 = copy)."""
    tau_critic: float = 0.05
    """Polyak rate of the target critic, after each critic update (1 = copy)."""
    drop_partial_chunks: bool = True
    """Weight the TD loss by valid[-1] (reference): chunks crossing an episode end before their last step are
    skipped. False uses them with exact n-step targets."""
    microbatch_chains: int | None = None
    """Chains per micro-batch for the teacher-forced log-prob and the imagined-Q pass (0 = all at once; None =
    1024 on CPU, all at once on CUDA). The PPO loss is a mean over independent chains, so gradient accumulation
    over micro-batches is exact; on CPU it keeps the paper config's [G*B*K, 512] activations cache-sized, on an
    H100 one slice was faster (paper update 73 -> 55 ms; docs/benchmarks.md)."""
    critic_warmup: int = 0
    """Updates at the start of the online phase that train only the critic (the actor waits for a critic that
    has seen data; the reference's `q_warmup_steps`, 0 in its scripts)."""
    actor_every: int = 1
    """Updates per actor step after the critic warm-up: the critic trains on every update, the actor on every k-th
    (TD3's policy delay). With `--run.utd` raised by k it buys k critic steps per actor step for less learner time
    than k full updates. 1 = the reference (an actor step on every update)."""
    success_critic_step: bool = False
    """Extra TD step on a success-buffer batch (`use_success_buffer_q`, square/transport scripts)."""
    extraction: Literal["ppo", "awr", "awr_fm", "fpo", "bptt"] = "ppo"
    """Actor objective: ppo = OGPO's clipped chain ratio; awr = AW-OGPO, clipped exp(A/beta)
    weights replace A there; awr_fm = weighted CFM on G target-actor ODE samples per state; fpo = CFM-loss ratio
    exp(L_old - L_new) on them, clipped; bptt = max `target_agg` target Q backpropagated through the ODE sampler."""
    awr_mode: AWRMode = "symmetric"
    """extraction awr / awr_fm: weights exp(A/beta) for all A (symmetric), a separate awr_beta_neg for
    A <= 0 (asymmetric), or zero weight for A <= 0 (positive_only); clipped to [0, awr_weight_max]."""
    awr_beta: float = 10.0
    """AWR temperature (the authors' Square setting)."""
    awr_beta_neg: float | None = None
    """Asymmetric mode's temperature for A <= 0; None = infinite (w = 1, the reference's exp(max(0, A)/beta))."""
    awr_weight_max: float = 20.0
    """Upper clip of the AWR weights (> 0)."""
    n_mc: int = 16
    """(tau, eps) Monte-Carlo pairs per sample for the awr_fm / fpo CFM losses (`awr_n_mc`, `fpo_n_mc`)."""
    fpo_per_sample: bool = True
    """FPO++: clip each (tau, eps) draw's ratio separately; False = FPO, one ratio from the averaged losses."""
    fpo_aspo: bool = False
    """FPO++'s asymmetric trust region (SPO penalty for A <= 0); off in the reference script."""
    fpo_huber_delta: float | None = 1.0
    """Huber CFM loss in the FPO ratio (reference script); None = squared error."""
    fpo_loss_clamp: float = 4.0
    """extraction fpo: each CFM loss is clamped to [0, this] before the log ratio L_old - L_new."""
    fpo_diff_clamp: float = 5.0
    """extraction fpo: the log ratio L_old - L_new is clamped to +-this (ratio within e^-5..e^5 at 5)."""
    bptt_samples: int = 4
    """Fixed start noises per state for BPTT (`bptt_num_samples`)."""
    grad_diag_every: int = 50
    """Log the imagined actions' variance along / orthogonal to grad_a Q every this many updates (0 = off)."""
    ratio_stats: Literal["live", "all"] = "live"
    """Chains the PPO ratio statistics (actor/ratio_mean, ratio_max, clip_frac, approx_kl) average over: live =
    those of nonzero weight, the chains of the loss (the others get no log-prob forward at all: ~10 % of an OGPO+CA
    update, where sign consensus zeroes 60-70 % of the advantages); all = every imagined chain (one no-grad forward
    of the zero-weight chains). The same when no weight is zero (vanilla advantage); all whenever every weight is."""

    def __post_init__(self):
        check(self, _RULES, "algo.", lambda c, flag: [
            (c.ppo_batch_size <= c.batch_size, "ppo_batch_size", f"must be <= {flag('batch_size')} ({c.batch_size})"),
            (c.actor_lr_floor <= c.actor_lr, "actor_lr_floor", f"must be <= {flag('actor_lr')} ({c.actor_lr})"),
            (c.lr_warmup <= c.lr_cycle, "lr_warmup", f"must be <= {flag('lr_cycle')} ({c.lr_cycle})"),
            # the penultimate advantage reads the 2nd smallest / 2nd largest head
            (c.advantage != "penultimate" or c.critic.num_heads >= 2, "critic.num_heads",
             f"must be >= 2 with {flag('advantage')} penultimate"),
            # the distillation target is picked among the actor step's own group of imagined actions
            (c.bon_distill_coeff == 0 or 2 <= c.best_of_n <= c.group_size, "best_of_n",
             f"must be in [2, {flag('group_size')} ({c.group_size})] with {flag('bon_distill_coeff')} > 0"),
            (c.bon_distill_coeff == 0 or c.extraction != "bptt", "bon_distill_coeff",
             f"must be 0 with {flag('extraction')} bptt (it has no imagined group)")])


_RULES = rules({
    ("batch_size", "ppo_batch_size", "best_of_n", "n_mc", "bptt_samples", "lr_cycle", "actor_every"): INT_POS,
    "group_size": integer(2, note="the group Monte-Carlo baseline needs 2 chains"),
    ("bon_after_updates", "lr_warmup", "critic_warmup"): INT_NONNEG,
    "grad_diag_every": integer(0, note="0 = off"),
    "microbatch_chains": integer(0, note="0 = all at once", none="1024 on CPU, all at once on CUDA"),
    "gamma": UNIT,
    ("tau_actor", "tau_critic"): RATE,
    ("clip_eps", "actor_lr", "critic_lr", "grad_clip", "awr_beta", "awr_weight_max", "fpo_loss_clamp",
     "fpo_diff_clamp"): POS,
    ("actor_lr_floor", "weight_decay"): NONNEG,
    "bc_coeff": number(ge=0, note="0 = no cloning term"),
    "bon_distill_coeff": number(ge=0, note="0 = no Best-of-N distillation"),
    "awr_beta_neg": number(gt=0, none="infinite"),
    "fpo_huber_delta": number(gt=0, none="squared error"),
    "adv_clip_min": number(none="no clip"),
})
