"""`flowft quickstart`: the main job end to end on the default task (robosuite Lift; `--task toy` needs no simulator).

demos (scripted expert) -> BC clipped at >= 45 % success -> OGPO+ with conservative advantage -> learning curve.
Per-task budgets (QUICKSTART) are sized so the whole job finishes in minutes on 2 CPU cores (docs/tasks.md).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowft.presets import bc_preset, train_preset

# Per-task quickstart budget on top of the presets (BC_DEFAULTS / RUN_DEFAULTS): demo count and run overrides.
# Lift: one evaluation at the start, one halfway and one at the end (each 2 samplers x 32 episodes is the
# dominant cost on robosuite), 12k env steps = 1000 critic-only updates then ~1500 actor updates (docs/tasks.md).
QUICKSTART: dict[str, dict] = {
    "toy": {"demo_episodes": 200, "run": {}},
    "lift": {"demo_episodes": 50, "run": {"env_steps": 12_000, "eval_every": 6_000}},
}
_SIM_MODULE = {"robomimic": "robosuite", "adroit": "gymnasium_robotics", "kitchen": "gymnasium_robotics"}


@dataclass(frozen=True)
class QuickstartArgs:
    task: str = "lift"
    """Task to run (`flowft info`). lift (needs flowft[robomimic]) finishes in about 10 minutes on 2 CPU cores;
    `toy` (pure numpy) in 1-3 minutes."""
    algo: str = "ogpo-plus-ca"
    size: Literal["tiny", "mid", "paper"] = "tiny"
    seed: int = 0
    demo_episodes: int | None = None
    """Scripted-expert demonstrations to generate (default: the task's quickstart budget, 50 lift / 200 toy)."""
    env_steps: int | None = None
    """Override the online env-step budget (default: the task's quickstart budget, 12k)."""
    out_dir: str = "runs/quickstart"
    device: str = "cpu"


def check_simulator(task: str) -> None:
    """Fail before any work when the task's simulator extra is missing, naming the pip extra and `--task toy`."""
    from flowft.registry import get_task

    extra = get_task(task).extra
    if extra and importlib.util.find_spec(_SIM_MODULE.get(extra, extra)) is None:
        raise SystemExit(f"flowft quickstart --task {task} needs the simulator extra: pip install 'flowft[{extra}]' "
                         f"(from a checkout: pip install -e '.[{extra}]'), or run `flowft quickstart --task toy`, "
                         "which needs no simulator.")


def quickstart(args: QuickstartArgs) -> dict:
    from flowft.algos.bc import pretrain
    from flowft.data.hdf5 import write_demos
    from flowft.registry import get_task
    from flowft.train.loop import Trainer

    check_simulator(args.task)
    t0 = time.perf_counter()
    out = Path(args.out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    task = get_task(args.task)
    budget = QUICKSTART.get(args.task, {"demo_episodes": 100, "run": {}})
    n_demos = args.demo_episodes or budget["demo_episodes"]
    demos = out / f"demos-{args.task}-s{args.seed}-n{n_demos}.hdf5"
    if not demos.exists():
        print(f"[1/3] generating {n_demos} demonstrations -> {demos}", file=sys.stderr)
        write_demos(demos, task.generate(n_demos, args.seed, 0.1), task.meta())
    bc_cfg = bc_preset(args.task, args.size, str(demos), seed=args.seed, out_dir=str(out), device=args.device,
                       run_name=f"bc-{args.task}-s{args.seed}-{stamp}")
    print(f"[2/3] behaviour cloning, clipped at >= {bc_cfg.clip_threshold:.0%} success "
          f"({bc_cfg.clip_sampler} sampler, check every {bc_cfg.eval_every} steps)", file=sys.stderr)
    bc_ckpt, bc_res = pretrain(bc_cfg)
    print(f"      BC stopped after {bc_res['bc/steps']} steps at success {bc_res['eval/success']:.2f}", file=sys.stderr)
    print(f"[3/3] {args.algo} finetuning from {bc_ckpt}", file=sys.stderr)
    overrides = {**budget["run"], **({"env_steps": args.env_steps} if args.env_steps else {})}
    if args.env_steps and "eval_every" in budget["run"]:
        overrides["eval_every"] = max(args.env_steps // 2, 1)  # keep the start / halfway / end evaluations
    cfg = train_preset(args.algo, args.task, args.size, bc_checkpoint=str(bc_ckpt), seed=args.seed,
                       out_dir=str(out), device=args.device, run_name=f"{args.algo}-{args.task}-s{args.seed}-{stamp}",
                       **overrides)
    trainer = Trainer(cfg)
    res = trainer.run()
    summary = {"bc_success": bc_res["eval/success"], **res, "wall_s": time.perf_counter() - t0,
               "run_dir": str(trainer.run_dir), "plot": str(trainer.run_dir / "plots" / "learning_curve.png")}
    n = getattr(cfg.algo, "best_of_n", 1)  # not every registered algorithm has a Best-of-N sampler
    sampler = f"Best-of-{n} SDE" if n > 1 else "one SDE sample"
    print(f"\nquickstart done in {summary['wall_s']:.0f}s: BC success {bc_res['eval/success']:.2f} "
          f"({bc_cfg.clip_sampler}) -> {args.algo} ODE {res.get('eval/ode/success', float('nan')):.2f} / "
          f"rollout sampler ({sampler}) {res.get('eval/bon/success', float('nan')):.2f}\n"
          f"run dir: {trainer.run_dir}\n"
          f"learning curve: {summary['plot']}")
    return summary
