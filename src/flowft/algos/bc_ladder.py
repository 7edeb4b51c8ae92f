"""Honest BC starts when the demonstrations teach too well: the fewer-demos ladder of `flowft bench` and
`flowft quickstart`.

BC at a flat loss is clipped on a 64-episode ODE confirmation in [clip_threshold, clip_max] (algos/bc_gate.py). When
every confirmation stays above the ceiling (bc/over_ceiling: on Lift seeds 1-2, 12 operator-style demos taught BC to
0.64-0.77), the run would start above the paper's <= 50 %. The ladder then trains BC again on only the first n
successful demos, for each n in turn, and keeps the first attempt at or under the ceiling (else the last one).

Layout, beside the BC dir `<bc>` the caller names:
    <bc>.n<N>-all/      the attempt on every demo (N = the demo count); DONE holds its result
    <bc>.n<n>/          the attempt on the first n successful demos, one per rung tried
    <bc>/               a copy of the kept attempt, with attempts.json (every attempt tried, in order)
A rerun reuses finished attempts (DONE and a checkpoint) and moves an interrupted one aside; `<bc>` appears only
complete (copied under a temporary name, then renamed).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flowft.utils.rundirs import move_aside

PretrainOne = Callable[[Path, "int | None"], dict]
"""(run dir to create, max successful demos or None for all) -> the BC result dict (bc/over_ceiling, ...)."""


def is_ladder(ns: Sequence[int]) -> bool:
    """A valid fewer-demos ladder: positive, strictly decreasing successful-demo counts (empty: no retraining)."""
    return min(ns, default=1) >= 1 and list(ns) == sorted(set(ns), reverse=True)


def attempt_dir(bc_dir: Path, n: int | None, n_demos: int) -> Path:
    """The dir of one attempt: `<bc>.n<n_demos>-all` for every demo, `<bc>.n<n>` for the first n successful."""
    return bc_dir.with_name(f"{bc_dir.name}.n{n_demos}-all" if n is None else f"{bc_dir.name}.n{n}")


def finished(run_dir: Path) -> dict | None:
    """The result of a finished attempt (its DONE), None when it has none or no checkpoint."""
    done = run_dir / "DONE"
    if done.exists() and (run_dir / "checkpoint" / "model.safetensors").exists():
        return json.loads(done.read_text())
    return None


def run_attempt(run_dir: Path, n: int | None, pretrain_one: PretrainOne) -> dict:
    """One BC attempt into `run_dir` (reused when finished; an unfinished one is moved aside first)."""
    res = finished(run_dir)
    if res is not None:
        print(f"      reusing the finished BC attempt {run_dir}", file=sys.stderr)
        return res
    if run_dir.exists():
        move_aside(run_dir)
    res = pretrain_one(run_dir, n)
    (run_dir / "DONE").write_text(json.dumps(res, indent=1, default=float))
    return res


def pretrain_honest(bc_dir: Path, n_demos: int, ladder: Sequence[int], pretrain_one: PretrainOne) -> dict:
    """Clipped BC into `bc_dir` (which must not exist), descending `ladder` (positive, decreasing successful-demo
    counts) while an attempt confirms above the clip ceiling. Returns the kept attempt's result. An empty ladder
    trains once, straight into `bc_dir`."""
    if not is_ladder(ladder):
        raise ValueError(f"fewer-demos ladder {tuple(ladder)}: must be positive and strictly decreasing")
    if not ladder:
        res = pretrain_one(bc_dir, None)
        (bc_dir / "DONE").write_text(json.dumps(res, indent=1, default=float))
        return res
    attempts: list[dict] = []
    for n in [None, *ladder]:
        d = attempt_dir(bc_dir, n, n_demos)
        res = run_attempt(d, n, pretrain_one)
        attempts.append({"dir": d.name, "successful_demos": n or "all", "confirmed": res.get("bc/confirmed_success"),
                         "over_ceiling": res.get("bc/over_ceiling")})
        if not res.get("bc/over_ceiling"):
            break
        if n != ladder[-1]:
            print(f"      BC confirmed {res.get('bc/confirmed_success', float('nan')):.2f}, over the clip ceiling: "
                  f"training again on fewer successful demos", file=sys.stderr)
    tmp = bc_dir.with_name(f"{bc_dir.name}.copying")
    if tmp.exists():  # a copy cut short by an earlier interruption: only ever a copy of an attempt dir
        shutil.rmtree(tmp)
    shutil.copytree(d, tmp)
    (tmp / "attempts.json").write_text(json.dumps(attempts, indent=1))
    tmp.rename(bc_dir)
    print(f"      kept the BC attempt {d.name} ({len(attempts)} tried; {bc_dir / 'attempts.json'})", file=sys.stderr)
    return res
