"""Numbers behind the paper-claim verdicts in docs/results.md, computed from run directories (config.json +
metrics.csv, e.g. the copies under docs/results/runs/).

    python benchmarks/claims.py docs/results/runs/cpu-small --methods ogpo-plus ogpo-plus-ca [--switch 2000]
        [--window 4000] [--out docs/results/claims-toy.md]

Per method label (the run dir's parent name, as `flowft report --label parent`) and over seeds:
  start  = headline success at env step 0 (the BC policy),
  before = mean success over the evals in [0, switch] (the BC policy, unchanged until the actor's first update:
           the spread of these readings is the evaluation noise),
  dip    = start - min success over the evals in (switch, switch + window] (the drop after the offline->online
           switch; 0 if it never falls below the start; biased upward by evaluation noise),
  change = mean success over (switch, switch + window] - before (the same drop, averaged: less noisy),
  auc    = mean success over every eval (area under the learning curve / budget),
  final  = success at the last eval.
A column without any eval in its range (e.g. the window on Lift, evaluated at 0 and 12k only) reads "— (no eval)".
Each is given as mean ± sample std over seeds, with the per-seed values. With --out the table is written to a file
whose first line is the command that made it (run from the repository root), so tests/test_results.py can rebuild
it and check that the committed numbers follow from the committed run CSVs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from flowft.bench.report import find_run_dirs, group_runs, load_run


def claim_stats(run, switch: int, window: int) -> dict[str, float]:
    steps, y = run.steps, run.success
    start = float(y[steps == 0][0]) if (steps == 0).any() else float("nan")
    early = y[(steps > switch) & (steps <= switch + window)]
    before = float(y[steps <= switch].mean()) if (steps <= switch).any() else float("nan")
    dip = max(0.0, start - float(early.min())) if early.size else float("nan")
    change = float(early.mean()) - before if early.size else float("nan")
    return {"start": start, "before": before, "dip": dip, "change": change, "auc": float(y.mean()),
            "final": float(y[-1])}


def fmt(vals: list[float]) -> str:
    a = np.array(vals, float)
    if np.isnan(a).all():  # e.g. Lift/Can, evaluated at 0 and the end only: no eval inside the window
        return "— (no eval)"
    sd = f" ± {a.std(ddof=1):.2f}" if len(a) > 1 else ""
    return f"{a.mean():.2f}{sd} ({', '.join(f'{v:.2f}' for v in a)})"


def claims_table(dirs: list[str], methods: list[str], switch: int, window: int) -> list[str]:
    runs = [load_run(p, label="parent") for p in find_run_dirs([Path(d) for d in dirs])]
    groups = group_runs([r for r in runs if r.method in methods])
    lines = ["| method | seeds | start | mean up to the switch | dip after the switch | change after the switch "
             "| mean success over evals | final |", "|---|---|---|---|---|---|---|---|"]
    for method in methods:
        for (task, m), rs in groups.items():
            if m != method:
                continue
            stats = [claim_stats(r, switch, window) for r in rs]
            cols = [fmt([s[k] for s in stats]) for k in ("start", "before", "dip", "change", "auc", "final")]
            lines.append(f"| {task}/{m} | {len(rs)} | " + " | ".join(cols) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--switch", type=int, default=2000, help="env step of the first actor update")
    ap.add_argument("--window", type=int, default=4000)
    ap.add_argument("--out", default="", help="also write the table here, after a line with this command")
    args = ap.parse_args(argv)
    lines = claims_table(args.dirs, args.methods, args.switch, args.window)
    print("\n".join(lines))
    if args.out:
        cmd = shlex.join(["python", "benchmarks/claims.py", *(sys.argv[1:] if argv is None else argv)])
        Path(args.out).write_text("\n".join([f"<!-- {cmd} -->", *lines]) + "\n")


if __name__ == "__main__":
    main()
