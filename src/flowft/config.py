"""Run-level configs shared by every algorithm. Algorithm knobs live in each algorithm's own dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import tyro

from flowft.utils.logging import LogConfig

Sampler = Literal["ode", "sde", "bon"]
AlgoCfgT = TypeVar("AlgoCfgT")


@dataclass(frozen=True)
class RunConfig:
    task: str = "toy"
    """Registered task (`flowft info` lists them)."""
    seed: int = 0
    device: str = "cpu"
    """cpu | cuda | cuda:N | auto."""
    bc_checkpoint: str | None = None
    """BC checkpoint directory (from `flowft pretrain`) every method starts from. Required for `train`."""
    num_envs: int = 8
    env_steps: int = 30_000
    """Online environment-step budget (summed over envs)."""
    start_training: int = 2_000
    """Env steps collected before the first update (reference: 10k; 40k transport/toolhang)."""
    utd: float = 0.25
    """Gradient updates per env step; 1/H = one update per executed chunk step."""
    buffer_capacity: int = 1_000_000
    eval_every: int = 5_000
    eval_episodes: int = 64
    eval_envs: int = 16
    eval_samplers: tuple[Sampler, ...] = ("ode", "bon")
    """Evaluators: deterministic ODE policy and the Best-of-N SDE rollout policy (as the reference)."""
    ckpt_every: int = 10_000
    keep_checkpoints: int = 2
    save_buffer: bool = True
    """Store the replay buffer in checkpoints (needed for exact resume)."""
    out_dir: str = "runs"
    run_name: str | None = None
    """Run directory name; default <algo>-<task>-s<seed>-<timestamp>."""
    threads: int | None = None
    """torch.set_num_threads; default: torch's choice."""
    vectorization: Literal["auto", "sync", "async"] = "auto"
    overlap_updates: bool = False
    """Off-policy: run each step's updates while the envs step (AsyncVectorEnv workers), instead of after. The
    updates then lag the buffer by one env step; on-policy algorithms ignore it. Off by default so that the
    published runs (docs/results.md) stay reproducible; measured speed-up in docs/results.md (throughput)."""
    compile: bool = False
    """Fast path for the OGPO update (train/fastpath.py): torch.compile the imagination chain and the critic's scoring
    and TD step (on GPU also the teacher-forced log-prob and CFM term, as CUDA graphs). Compiles once at start (10-25 s
    warm cache, ~1 min cold); same draws as eager, updates equal up to float rounding. Falls back to eager with a
    warning where it cannot compile; algorithms without a fast path ignore it. Speed-ups: docs/benchmarks.md."""
    precision: Literal["fp32", "bf16-nograd", "bf16"] = "fp32"
    """Network precision of the OGPO update. bf16-nograd: bf16 autocast for the no-grad imagination and critic
    scoring (log-probs and gradients fp32). bf16: mixed precision for every network call of the update (weights,
    optimizer, chains and log-prob sums fp32). The PPO ratio is 1 at theta = theta_old in every mode. Needs bf16
    matmuls (AVX512-BF16/AMX CPU, or a GPU), else fp32 with a warning. Not a default: learning curves untested."""
    plot: bool = True
    """Write a learning-curve PNG (plots/learning_curve.png) at every eval."""
    critic_diag_episodes: int = 10
    """Critic-quality diagnostic (train/critic_diag/*, docs/algorithm.md): at every train-metric row, the critic's
    Q on the executed chunks of the last this-many finished training episodes vs. their discounted Monte-Carlo
    returns (bias, rank correlation). 0 = off; algorithms without a Q(s, a_chunk) critic never log it."""
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self):
        if self.critic_diag_episodes < 0:
            raise ValueError(f"RunConfig.critic_diag_episodes must be >= 0, got {self.critic_diag_episodes}")
        if self.precision not in ("fp32", "bf16-nograd", "bf16"):
            raise ValueError(f"RunConfig.precision must be fp32, bf16-nograd or bf16, got {self.precision!r}")


@dataclass(frozen=True)
class TrainConfig(Generic[AlgoCfgT]):
    algo_name: tyro.conf.Suppress[str]
    """Registered algorithm preset (ogpo, ogpo-plus, ogpo-ca, ogpo-plus-ca, ...)."""
    run: RunConfig
    algo: AlgoCfgT


def load_train_config(data: dict) -> TrainConfig:
    """Rebuild a TrainConfig from a run's config.json (the algorithm's config class comes from the registry)."""
    from flowft.registry import get_algorithm
    from flowft.utils.config_io import from_dict

    spec = get_algorithm(data["algo_name"])
    return TrainConfig(algo_name=data["algo_name"], run=from_dict(RunConfig, data["run"], "run"),
                       algo=from_dict(spec.cfg_cls, data["algo"], "algo"))
