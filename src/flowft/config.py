"""Run-level configs shared by every algorithm. Algorithm knobs live in each algorithm's own dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import tyro

from flowft.utils.logging import LogConfig
from flowft.utils.validate import INT_NONNEG, INT_POS, LOG_RULES, check, integer, number, rules, sub_rules

Sampler = Literal["ode", "ode_zero", "sde", "bon"]
AlgoCfgT = TypeVar("AlgoCfgT")


@dataclass(frozen=True)
class RunConfig:
    task: str = "toy"
    """A built-in task (`flowft info` lists them), or your own env as an env spec: a gymnasium id, `package:EnvId`,
    `module:callable`, `module:TASKSPEC`, or a JSON object {"env": ..., "kwargs": {...}, adapter options} (docs/
    own_env.md). Recorded in config.json, so eval and resume rebuild the env."""
    seed: int = 0
    """Seed (>= 0) of the networks the run initialises, the update RNG streams, and the training and eval env resets."""
    device: str = "cpu"
    """cpu | cuda | cuda:N | auto."""
    bc_checkpoint: str | None = None
    """BC checkpoint directory (from `flowft pretrain`) every method starts from. Required for `train`."""
    num_envs: int = 8
    """Parallel training envs, stepped in lockstep (one vector env); every cadence below counts their steps summed."""
    env_steps: int = 30_000
    """Online environment-step budget (summed over envs)."""
    start_training: int = 2_000
    """Env steps collected before the first update (reference: 10k; 40k transport/toolhang)."""
    utd: float = 0.25
    """Gradient updates per env step; 1/H = one update per executed chunk step."""
    buffer_capacity: int = 1_000_000
    """Replay buffer size in env steps (summed over envs: one ring of capacity/num_envs per env, oldest overwritten).
    Must be >= num_envs * chunk length; on-policy algorithms (DPPO) keep no replay buffer and ignore it."""
    eval_every: int = 5_000
    """Env steps between evaluations (also one at step 0 of a new run and one at the end of the budget)."""
    eval_episodes: int = 64
    """Episodes per evaluation, for each sampler of --run.eval-samplers."""
    eval_envs: int = 16
    """Parallel envs of the evaluations (a separate vector env from the training one)."""
    eval_samplers: tuple[Sampler, ...] = ("ode", "bon")
    """Evaluators: ode = the ODE policy from a drawn start noise (the reference's); ode_zero = the same from x0 = 0
    (one deterministic chunk per state); sde = one SDE sample; bon = the Best-of-N SDE rollout policy."""
    start_eval_from_bc: bool = False
    """Step 0: log the BC gate's start read as the ODE evaluation instead of running it again, when the BC checkpoint
    has one of exactly these episodes (BCConfig.confirm_start with this run's seed, --run.eval-episodes,
    --run.eval-envs and device; tests/test_bc_start_read.py checks that the two agree); else evaluate as usual.
    `flowft quickstart` sets it on Lift, where a 64-episode evaluation takes about a minute on 2 cores."""
    ckpt_every: int = 10_000
    """Env steps between checkpoints (on-policy: at the next rollout boundary); one more is written at the budget."""
    keep_checkpoints: int = 2
    """Newest usable checkpoints kept; older ones are deleted when a new one is written."""
    max_weight_growth: float = 20.0
    """Divergence guard: a checkpoint is refused, and the run stopped as diverged, when a module's weights grow past
    this multiple of their RMS at the run's start (the published 100k-step runs stay within 1.6x, docs/runs.md); 0 = off."""
    save_buffer: bool = True
    """Store the replay buffer in checkpoints (needed for exact resume)."""
    out_dir: str = "runs"
    """Parent directory of the run directory."""
    run_name: str | None = None
    """Run directory name; default <algo>-<task>-s<seed>-<timestamp>."""
    threads: int | None = None
    """torch.set_num_threads; default: torch's choice."""
    vectorization: Literal["auto", "sync", "async"] = "auto"
    """Vector env of the training and evaluation envs. sync: all envs in this process; async: one subprocess per env
    (AsyncVectorEnv); auto: the task's own setting (async for the robomimic and kitchen tasks, else sync)."""
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
    video_every: int = 0
    """Record one rendered episode of the first eval sampler every this-many env steps, at the evaluation there
    (a multiple of --run.eval-every), and at the budget, to RUN/videos/STEP/eval_SAMPLER.mp4 (needs the [video]
    extra and an offscreen renderer). 0 = off."""
    critic_diag_episodes: int = 10
    """Critic-quality diagnostic (train/critic_diag/*, docs/algorithm.md): at every train-metric row, the critic's
    Q on the executed chunks of the last this-many finished training episodes vs. their discounted Monte-Carlo
    returns (bias, rank correlation). 0 = off; algorithms without a Q(s, a_chunk) critic never log it."""
    env_workers: int = 0
    """Distributed acting (flowft.dist; needs the [dist] extra, docs/scaling.md): 0 = this process steps the envs
    (the single-process loop); N >= 1 = N Ray actors step --run.num-envs envs each with an acting copy of the
    policy (and critic) and send their transitions to this process, which owns the replay buffer and the updates.
    Off-policy algorithms only; UTD counts the env steps received."""
    ray_address: str | None = None
    """Ray cluster for --run.env-workers: None = a local Ray on this machine; `auto` = the cluster this node joined
    with `ray start --head` / `ray start --address` (docs/scaling.md); or HOST:PORT."""
    weight_sync_every: int = 1
    """--run.env-workers: learner updates between two weight broadcasts to the workers (Ray object store)."""
    worker_steps: int = 16
    """--run.env-workers: vector-env steps a worker collects per message to the learner."""
    worker_order: Literal["arrival", "round-robin"] = "arrival"
    """--run.env-workers: the order the learner takes workers' messages in. `arrival`: whichever is ready first
    (fastest; the order, and so the run, depends on timing). `round-robin`: each worker in turn (a slow worker
    stalls the others; the run is reproducible from its seed, as the single-process loop is)."""
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self):
        check(self, _RUN_RULES, "run.", lambda c, flag: [
            (len(c.eval_samplers) > 0, "eval_samplers", "needs at least one sampler (ode, ode_zero, sde, bon)"),
            (not (c.start_eval_from_bc and c.env_workers), "start_eval_from_bc",
             "is for the single-process loop (--run.env-workers 0)"),
            (c.precision in ("fp32", "bf16-nograd", "bf16"), "precision", "must be fp32, bf16-nograd or bf16"),
            (c.worker_order in ("arrival", "round-robin"), "worker_order", "must be arrival or round-robin"),
            (c.video_every % c.eval_every == 0, "video_every",
             f"must be a multiple of --run.eval-every {c.eval_every} (videos are recorded at evaluations)"),
            *sub_rules(c, "log", LOG_RULES)])


# The loop tests `env_steps % every < num_envs` for every cadence, so 0 would divide by zero and a negative one would
# fire at every step (a checkpoint per env step); seeds feed numpy's SeedSequence, which needs >= 0.
_RUN_RULES = rules({
    ("num_envs", "env_steps", "eval_every", "eval_episodes", "eval_envs", "ckpt_every", "keep_checkpoints",
     "buffer_capacity"): INT_POS,
    ("seed", "start_training"): INT_NONNEG,
    "utd": number(ge=0, note="0 = collect only, no updates"),
    "max_weight_growth": number(ge=0, note="0 = off"),
    "threads": integer(1, none="torch's choice"),
    ("critic_diag_episodes", "video_every"): integer(0, note="0 = off"),
    "env_workers": integer(0, note="0 = single process"),
    ("weight_sync_every", "worker_steps"): INT_POS,
})


@dataclass(frozen=True)
class TrainConfig(Generic[AlgoCfgT]):
    algo_name: tyro.conf.Suppress[str]
    """Registered algorithm preset (ogpo, ogpo-plus, ogpo-ca, ogpo-plus-ca, ...)."""
    run: RunConfig
    algo: AlgoCfgT

    def __post_init__(self):
        check(self, {}, "", _loop_checks)  # run.* and algo.* are re-checked under their full flags


def _loop_checks(cfg: TrainConfig, flag) -> list[tuple[bool, str, str]]:
    """run.* against the task's chunk length, for off-policy algorithms: the first update samples whole chunks (H
    stored steps of an env; with --run.overlap-updates the current step is not stored yet), else it fails deep
    inside the run. Names not registered (yet) are left to the Trainer, which names them."""
    from flowft.registry import ALGORITHMS, TASKS, _load_builtin

    _load_builtin()
    task, spec, r = TASKS.get(cfg.run.task), ALGORITHMS.get(cfg.algo_name), cfg.run
    if task is None or spec is None or getattr(spec.cls, "on_policy", False):
        return []
    H, N = task.chunk_len, r.num_envs
    need = N * (H if r.overlap_updates else H - 1) + 1  # the first update comes at the first multiple of N >= it
    why = f"{flag('run.num_envs')} {N}, chunk length {H} of task '{r.task}'"
    return [(r.start_training >= need, "run.start_training", f"must be >= {need} ({why}"
             f"{', overlap-updates' if r.overlap_updates else ''}: the first update samples whole chunks)"),
            (r.buffer_capacity >= N * H, "run.buffer_capacity", f"must be >= {N * H} ({why})")]


def load_algo_config(algo_name: str, data: dict):
    """Rebuild an algorithm's config from its config.json section (the class comes from the registry); fields the
    data lacks (added to flowft since it was written) take their defaults, unknown ones are an error."""
    from flowft.registry import get_algorithm
    from flowft.utils.config_io import from_dict

    return from_dict(get_algorithm(algo_name).cfg_cls, data, "algo")


def load_train_config(data: dict) -> TrainConfig:
    """Rebuild a TrainConfig from a run's config.json."""
    from flowft.utils.config_io import from_dict

    return TrainConfig(algo_name=data["algo_name"], run=from_dict(RunConfig, data["run"], "run"),
                       algo=load_algo_config(data["algo_name"], data["algo"]))
