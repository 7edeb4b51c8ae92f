"""`flowft quickstart`: the main job end to end on the default task.

demos (scripted expert) -> BC clipped at >= 45 % success -> OGPO+ with conservative advantage -> learning curve.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowft.presets import bc_preset, train_preset


@dataclass(frozen=True)
class QuickstartArgs:
    task: str = "toy"
    """Task to run (`flowft info`); the toy task finishes in a few minutes on 2 CPU cores."""
    algo: str = "ogpo-plus-ca"
    size: Literal["tiny", "mid", "paper"] = "tiny"
    seed: int = 0
    demo_episodes: int = 200
    env_steps: int | None = None
    """Override the preset's online env-step budget."""
    out_dir: str = "runs/quickstart"
    device: str = "cpu"


def quickstart(args: QuickstartArgs) -> dict:
    from flowft.algos.bc import pretrain
    from flowft.data.hdf5 import write_demos
    from flowft.registry import get_task
    from flowft.train.loop import Trainer

    t0 = time.perf_counter()
    out = Path(args.out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    task = get_task(args.task)
    demos = out / f"demos-{args.task}-s{args.seed}.hdf5"
    if not demos.exists():
        print(f"[1/3] generating {args.demo_episodes} demonstrations -> {demos}", file=sys.stderr)
        write_demos(demos, task.generate(args.demo_episodes, args.seed, 0.1), task.meta())
    print("[2/3] behaviour cloning, clipped at >= 45 % success", file=sys.stderr)
    bc_cfg = bc_preset(args.task, args.size, str(demos), seed=args.seed, out_dir=str(out), device=args.device,
                       run_name=f"bc-{args.task}-s{args.seed}-{stamp}")
    bc_ckpt, bc_res = pretrain(bc_cfg)
    print(f"      BC stopped after {bc_res['bc/steps']} steps at success {bc_res['eval/success']:.2f}", file=sys.stderr)
    print(f"[3/3] {args.algo} finetuning from {bc_ckpt}", file=sys.stderr)
    overrides = {"env_steps": args.env_steps} if args.env_steps else {}
    cfg = train_preset(args.algo, args.task, args.size, bc_checkpoint=str(bc_ckpt), seed=args.seed,
                       out_dir=str(out), device=args.device, run_name=f"{args.algo}-{args.task}-s{args.seed}-{stamp}",
                       **overrides)
    trainer = Trainer(cfg)
    res = trainer.run()
    summary = {"bc_success": bc_res["eval/success"], **res, "wall_s": time.perf_counter() - t0,
               "run_dir": str(trainer.run_dir), "plot": str(trainer.run_dir / "plots" / "learning_curve.png")}
    print(f"\nquickstart done in {summary['wall_s']:.0f}s: BC success {bc_res['eval/success']:.2f} -> "
          f"{args.algo} ODE {res.get('eval/ode/success', float('nan')):.2f} / "
          f"rollout sampler (Best-of-{cfg.algo.best_of_n} SDE) {res.get('eval/bon/success', float('nan')):.2f}\n"
          f"run dir: {trainer.run_dir}\n"
          f"learning curve: {summary['plot']}")
    return summary
