"""`flowft demos`: scripted-expert demonstrations of a task, written as robomimic-style HDF5.

Its own module so that cli.py stays a dispatcher; it imports only the standard library at import time (the task
registry, the HDF5 writer and tqdm load when the command runs), so `flowft --help` stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DemosArgs:
    out: str
    """Output HDF5 path."""
    env: str = "toy"
    """Task name (`flowft info` lists them)."""
    episodes: int = 200
    """Episodes to generate (failed ones are kept and flagged)."""
    seed: int = 0
    """Seed of the env resets and the expert's noise."""
    style: Literal["operator", "clean"] | None = None
    """Demonstration style (robosuite lift/can/square). operator (default for lift/can): per-episode perturbed
    experts (gain, approach height, grasp offset and timing), correlated OU noise on every dim incl. rotation,
    operator pauses and ramped gripper commands (flowft/envs/operator_noise.py). clean (default for square and the
    old behaviour): the scripted expert + i.i.d. --action-noise. Other tasks have one style."""
    action_noise: float | None = None
    """Std of i.i.d. Gaussian noise added to the expert's actions (default: 0.1 for clean, 0 on top of operator)."""
    progress: bool = True
    """Progress bar over the episodes with ETA and the expert's success count, on stderr; shown only on a
    terminal."""

    def __post_init__(self):
        from flowft.utils.validate import INT_NONNEG, check, integer, number, rules

        check(self, rules({"episodes": integer(1), "seed": INT_NONNEG,
                           "action_noise": number(ge=0, none="0.1 for clean, 0 on top of operator")}), "")


def demos_main(argv: list[str], tyro) -> int:
    import time

    from flowft.utils.validate import parse_cli

    args = parse_cli(DemosArgs, args=argv, prog="flowft demos", description="Generate demonstrations (HDF5).")
    # imported after parsing: the HDF5 writer loads torch (flowft.data.dataset), which `--help` never needs
    from flowft.data.readers.hdf5 import write_demos
    from flowft.envs.demo_progress import demo_bar
    from flowft.registry import get_task

    task = get_task(args.env)
    print(f"flowft demos: generating {args.episodes} episodes of {args.env} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        with demo_bar(args.episodes, f"demos {args.env}", enabled=args.progress):
            eps = task.demos(args.episodes, args.seed, args.action_noise, args.style)
    except ValueError as e:
        raise SystemExit(f"flowft demos: {e}") from None
    write_demos(args.out, eps, task.meta())
    rate = sum(e["success"] for e in eps) / max(1, len(eps))
    style = eps[0].get("style", {}).get("style", "clean") if eps else "clean"
    print(f"wrote {len(eps)} episodes ({style} style) to {args.out} in {time.perf_counter() - t0:.0f} s; expert "
          f"success rate {rate:.3f} (failed episodes are flagged; BC trains on successes only)")
    return 0
