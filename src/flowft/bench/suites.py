"""Named benchmark suites: algorithms x tasks x seeds x budget, as frozen Python objects (like presets.py).

A suite never copies a preset's numbers: every cell is `train_preset(algo, task, size, **overrides)` where the
overrides are only the budget fields set here (None = keep the preset's value). The BC stage of every (task, seed)
is `bc_preset(task, size, demos, **bc overrides)` on freshly generated scripted demos (`task.generate`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from flowft.presets import BC_FEWER_DEMOS

Size = Literal["tiny", "mid", "paper"]


@dataclass(frozen=True)
class Budget:
    """RunConfig overrides of one cell; None keeps the preset's value (presets.RUN_DEFAULTS / run_config)."""

    env_steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    eval_envs: int | None = None
    start_training: int | None = None
    num_envs: int | None = None
    ckpt_every: int | None = None
    buffer_capacity: int | None = None
    vectorization: Literal["sync", "async"] | None = None
    """sync: every env in the cell's process. Two robosuite cells on 2 cores step no slower that way, and async's
    worker processes take ~0.8 GB each (16 per cell with 8 eval envs)."""

    def overrides(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def merged(self, other: "Budget | None") -> "Budget":
        """self with every field that `other` sets replaced."""
        return self if other is None else replace(self, **other.overrides())


@dataclass(frozen=True)
class BCStage:
    """Demos + clipped BC of one (task, seed); None keeps bc_preset's value (presets.BC_DEFAULTS)."""

    demo_episodes: int = 200
    """Scripted demonstrations generated with task.generate(n, seed, demo_noise), cached as HDF5."""
    demo_noise: float | None = 0.1
    """i.i.d. Gaussian action noise of the demos; None = the demo style's default (task.demos)."""
    demo_style: str | None = "clean"
    """Scripted-expert style (TaskSpec.demo_styles, e.g. robosuite's operator); None = the task's default. "clean"
    is the expert + i.i.d. noise every earlier suite used."""
    steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    eval_envs: int | None = None
    clip: bool | None = None
    """None = the preset's (clip at >= 0.45 success, the paper's <= 50 % BC start)."""
    fewer_demos: tuple[int, ...] = ()
    """Honest starts when the demos teach too well: if BC at a flat loss still confirms above the clip ceiling
    (bc/over_ceiling), train it again on only the first n successful demos, for each n in turn, and keep the first
    attempt at or under the ceiling (every attempt is kept beside the BC dir and listed in its attempts.json)."""

    def __post_init__(self):
        from flowft.algos.bc_ladder import is_ladder

        if not is_ladder(self.fewer_demos):
            raise ValueError(f"BCStage.fewer_demos {self.fewer_demos}: must be positive and strictly decreasing")

    def overrides(self) -> dict:
        keys = ("steps", "eval_every", "eval_episodes", "eval_envs", "clip")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True)
class Variant:
    """A labelled method of an ablation: a registered algorithm with some config fields changed. `overrides`
    maps dotted field paths of the algorithm config to values, e.g. {"policy.sde.correction": "none"}."""

    algo: str
    overrides: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    doc: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    algorithms: tuple[str, ...] = ()
    """() = every registered algorithm at run time (registry.algorithm_names())."""
    variants: dict[str, Variant] = field(default_factory=dict)
    """Labelled ablation methods run in addition to `algorithms` (cell dir = the label; report with
    `--label parent`)."""
    size: Size = "tiny"
    budget: Budget = Budget()
    task_budgets: dict[str, Budget] = field(default_factory=dict)
    """Per-task budget fields, applied over `budget`."""
    task_algorithms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Registered algorithms run on one task only, in addition to `algorithms` (same BC checkpoints)."""
    bc: BCStage = BCStage()
    task_bc: dict[str, BCStage] = field(default_factory=dict)
    """Per-task BC stage, replacing `bc` for that task."""
    headline_only: bool = False
    """Evaluate only the method's headline sampler (AlgoSpec.headline) instead of the preset's ode + bon: halves
    evaluation time, which dominates on the simulators (docs/tasks.md)."""
    plot: bool = False
    """Per-run learning-curve PNG at every eval (off: `flowft report` draws the suite's curves)."""

    def budget_for(self, task: str) -> Budget:
        return self.budget.merged(self.task_budgets.get(task))

    def bc_for(self, task: str) -> BCStage:
        return self.task_bc.get(task, self.bc)

    def algorithms_for(self, task: str, algos: list[str]) -> list[str]:
        """`algos` (the resolved suite-wide methods) plus this task's own (`task_algorithms`)."""
        return algos + [a for a in self.task_algorithms.get(task, ()) if a not in algos]


def resolve_algorithms(suite: Suite, warn=True) -> tuple[list[str], list[str]]:
    """(method labels to run: registered algorithms, then variants of registered algorithms; requested but
    unregistered ones: skipped with a warning)."""
    from flowft.registry import algorithm_names

    registered = algorithm_names()
    run = [a for a in (suite.algorithms or registered) if a in registered]
    run += [label for label, v in suite.variants.items() if v.algo in registered]
    missing = [a for a in suite.algorithms if a not in registered]
    missing += [f"{label} ({v.algo})" for label, v in suite.variants.items() if v.algo not in registered]
    if missing and warn:
        print(f"warning: suite '{suite.name}': algorithms not registered, skipped: {missing}", file=sys.stderr)
    return run, missing


_ADROIT = ("door", "hammer", "pen", "relocate")
_KITCHEN = ("kitchen-complete", "kitchen-partial", "kitchen-mixed")

SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "toy-smoke", "tests / harness check: 2 OGPO variants x toy x 2 seeds x 640 env steps (~1 min)",
            tasks=("toy",), seeds=(0, 1), algorithms=("ogpo", "ogpo-plus-ca"),
            budget=Budget(env_steps=640, eval_every=320, eval_episodes=8, eval_envs=4, start_training=160,
                          num_envs=4, ckpt_every=320, buffer_capacity=20_000),
            bc=BCStage(demo_episodes=40, steps=150, eval_every=150, eval_episodes=8, eval_envs=4, clip=False),
        ),
        Suite(
            "cpu-small", "toy: every registered algorithm + the paper-claim ablations of OGPO+CA (issue 6 b-h: "
            "min-aggregated targets, group-std advantages, SDE without its score correction) x 3 seeds at the toy "
            "preset budget (12k env steps), eval every 1k (resolves the dip after the switch), 64 episodes",
            tasks=("toy",), seeds=(0, 1, 2), budget=Budget(eval_every=1_000, eval_episodes=64),
            variants={
                "ogpo-plus-ca-min-target": Variant("ogpo-plus-ca", (("target_agg", "min"),)),
                "ogpo-plus-ca-group-std": Variant("ogpo-plus-ca", (("normalize_group", True),)),
                "ogpo-plus-ca-no-sde-correction": Variant("ogpo-plus-ca", (("policy.sde.correction", "none"),)),
            },
        ),
        Suite(
            "cpu-lift", "robosuite Lift, OGPO+CA and every baseline/extraction method of issue 5 from the same clipped "
            "BC checkpoint: 12k env steps (the simulator CPU presets start the actor after 2k + 4k warm-up steps), "
            "64 episodes of the headline sampler at the start and the end (Lift evaluation dominates the wall time), "
            "3 seeds (use --seeds 0 for one)",
            tasks=("lift",), seeds=(0, 1, 2),
            algorithms=("ogpo-plus-ca", "ogpo", "ogpo-plus", "dppo", "dsrl", "qc", "bon-sft", "expo", "residual",
                        "ogpo-bptt", "ogpo-awr-fm", "ogpo-fpo", "ogpo-awr"),
            budget=Budget(env_steps=12_000, eval_every=12_000, eval_episodes=64, eval_envs=8),
            bc=BCStage(demo_episodes=100), headline_only=True,
        ),
        Suite(
            "cpu-can-door", "robosuite Can and Adroit door with the cpu-lift budget: the issue-6 methods (OGPO, OGPO+, "
            "OGPO+CA, DPPO, DSRL, QC, EXPO, residual) from the same clipped BC checkpoint per task and seed, 12k env "
            "steps, 64 episodes of the headline sampler at the start and the end (door: every 1k, its evaluation "
            "costs ~3 s, which resolves the dip after the actor starts at 6k), 3 seeds (use --seeds 0 for one)",
            tasks=("can", "door"), seeds=(0, 1, 2),
            algorithms=("ogpo-plus-ca", "ogpo", "ogpo-plus", "dppo", "dsrl", "qc", "expo", "residual"),
            budget=Budget(env_steps=12_000, eval_every=12_000, eval_episodes=64, eval_envs=8),
            task_budgets={"door": Budget(eval_every=1_000)},
            task_bc={"can": BCStage(demo_episodes=100)}, headline_only=True,
        ),
        Suite(
            "cpu-full", "toy, Lift, Can, Adroit door: every registered algorithm x 3 seeds at the CPU preset budgets "
            "(toy 12k, simulators 20k env steps), 64 eval episodes of the headline sampler per point",
            tasks=("toy", "lift", "can", "door"), seeds=(0, 1, 2),
            budget=Budget(eval_episodes=64, eval_envs=16),
            task_bc={"lift": BCStage(demo_episodes=100)}, headline_only=True,
        ),
        Suite(
            "sim-recipe", "issue 17: OGPO+CA and DPPO on robosuite Lift, Can and Adroit door (the authors' task "
            "definition) from the same clipped BC per (task, seed): the task's default demos (operator-style on "
            "Lift/Can), BC trained to a flat loss and clipped on a 64-episode ODE confirmation, then the simulator "
            "presets (the authors' recipe, docs/algorithm.md 'CPU recipe'): 100k env steps, 64 ODE episodes every 10k, "
            "3 seeds; on Can also OGPO+ and QC (the CA and partial-finetuning claims), on door also OGPO+ (the authors' "
            "Adroit advantage, on which the door preset was chosen)",
            tasks=("lift", "can", "door"), seeds=(0, 1, 2), algorithms=("ogpo-plus-ca", "dppo"),
            task_algorithms={"can": ("ogpo-plus", "qc"), "door": ("ogpo-plus",)},
            budget=Budget(vectorization="sync", ckpt_every=10_000),
            bc=BCStage(demo_episodes=100, demo_noise=None, demo_style=None), headline_only=True,
            # operator-style demos: BC at a flat loss lands near or below the clip with these counts (docs/tasks.md:
            # Lift 12 -> 0.28, Can 20 -> 0.16 ODE success on 64 episodes, seed 0)
            # seeds 1-2 of Lift confirmed 0.64-0.77 at a flat loss on 12 demos (~10 successful): fewer demos for them
            task_bc={"lift": BCStage(demo_episodes=12, demo_noise=None, demo_style=None,
                                     fewer_demos=BC_FEWER_DEMOS["lift"]),
                     "can": BCStage(demo_episodes=20, demo_noise=None, demo_style=None,
                                    fewer_demos=BC_FEWER_DEMOS["can"])},
        ),
        Suite(
            "paper", "paper size (4x512, G=32, M=10) and budgets (the paper's): 2M env steps "
            "(transport 3M, Adroit 0.5M), eval every 20k with 64 episodes, 3 seeds. GPU territory; untested here",
            tasks=("square", "transport", "tool_hang", *_KITCHEN, *_ADROIT), seeds=(0, 1, 2), size="paper",
            budget=Budget(env_steps=2_000_000, eval_every=20_000, eval_episodes=64, eval_envs=32,
                          start_training=10_000, ckpt_every=100_000),
            task_budgets={"transport": Budget(env_steps=3_000_000, start_training=40_000),
                          "tool_hang": Budget(start_training=40_000),
                          **{t: Budget(env_steps=500_000) for t in _ADROIT}},
            bc=BCStage(demo_episodes=300, steps=500_000, eval_every=5_000, eval_episodes=64, eval_envs=32),
            task_bc={"transport": BCStage(demo_episodes=300, steps=1_000_000, eval_every=20_000, eval_episodes=64,
                                          eval_envs=32),
                     "tool_hang": BCStage(demo_episodes=300, steps=500_000, eval_every=10_000, eval_episodes=64,
                                          eval_envs=32),
                     **{t: BCStage(demo_episodes=300, steps=500_000, eval_every=20_000, eval_episodes=64,
                                   eval_envs=32, clip=False) for t in _KITCHEN},
                     **{t: BCStage(demo_episodes=300, steps=50_000, eval_every=1_000, eval_episodes=64,
                                   eval_envs=32) for t in _ADROIT}},
        ),
    )
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite '{name}'; available suites: {', '.join(SUITES)}")
    return SUITES[name]


def suite_table() -> str:
    """One line per suite, for --help and error messages."""
    return "\n".join(f"  {s.name:<10} {s.doc}" for s in SUITES.values())
