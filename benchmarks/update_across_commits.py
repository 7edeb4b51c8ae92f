"""The tiny OGPO+CA update of another checkout against this one's modes, in alternating processes (issue 18's
"eager fp32 update" is the code of its filing day, which no mode of today's code reproduces exactly).

    git worktree add /tmp/old aaffdfa    # 2026-11-28, the last commit before the fast path
    python benchmarks/update_across_commits.py --old /tmp/old/src --modes eager compile --cycles 3 --rounds 30

Each cycle runs one process per entry (the old checkout's eager update first, then each of --modes with this
checkout's sources), so that load changes hit every entry alike across cycles. Every process builds the same
update: Lift dims (Do=19, Da=7, H=4, K=10), tiny networks, M=10 critic heads, no critic-only warm-up, no Best-of-N
distillation term (the old update had none), both critics' heads agreeing up to N(0, 0.02^2) noise
(update_speed.py's --heads-spread), 1 thread; it times `--rounds` updates by this process's CPU clock after 3
warm-up updates. Printed: per process the median and minimum CPU ms, then per entry the median of all its updates
and its ratio to the old eager update.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OBS, ACT = 19, 7  # Lift's dims


def child(mode: str, rounds: int) -> None:
    """Time `rounds` updates of whatever flowft is importable; print one JSON line."""
    import torch
    import update_speed  # this checkout's benchmarks/ (the script's directory): its buffer, chunk length and heads

    torch.set_num_threads(1)
    from flowft.algos.ogpo import OGPO
    from flowft.presets import ogpo_config

    cfg = dataclasses.replace(ogpo_config("ogpo-plus-ca", "lift", "tiny"), critic_warmup=0)
    cfg = dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, num_heads=10))
    if getattr(cfg, "bon_distill_coeff", 0.0):  # the old update had no distillation term: the same work
        cfg = dataclasses.replace(cfg, bon_distill_coeff=0.0)
    torch.manual_seed(0)
    algo = OGPO(cfg, OBS, ACT, update_speed.H, torch.device("cpu"), seed=0)
    t0 = time.perf_counter()
    if mode != "eager":
        from flowft.train import fastpath

        _, _, compile_mode = mode.partition("@")
        fastpath.enable_fast_path(algo, True, "fp32", None, (compile_mode,) if compile_mode else None)
    compile_s = time.perf_counter() - t0
    buf = update_speed.filled_buffer(OBS, ACT)
    update_speed.agree_heads(algo, 0.02)  # sign consensus as on trained critics (update_speed.py --heads-spread)
    for _ in range(3):
        algo.update(buf)
    times, zero = [], []
    for _ in range(rounds):
        t = time.process_time()
        stats = algo.update(buf)
        times.append(time.process_time() - t)
        zero.append(stats.get("actor/adv_zero_frac", float("nan")))
    print(json.dumps({"compile_s": compile_s, "times": times, "zero": statistics.mean(zero)}), flush=True)


def run(src: Path, mode: str, rounds: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--rounds", str(rounds)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="src/ of the other checkout (its eager update is the reference)")
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"],
                    help="this checkout's modes: eager | compile | compile@TORCH_COMPILE_MODE")
    ap.add_argument("--cycles", type=int, default=3, help="rounds of one process per entry")
    ap.add_argument("--rounds", type=int, default=30, help="timed updates per process")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.rounds)
    if args.old is None or not (args.old / "flowft").is_dir():
        ap.error(f"--old must be the src/ directory of a flowft checkout, got {args.old}")
    new = Path(__file__).resolve().parent.parent / "src"
    entries = [("old eager", args.old, "eager")] + [(f"this {m}", new, m) for m in args.modes]
    times: dict[str, list[float]] = {name: [] for name, _, _ in entries}
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    for cycle in range(args.cycles):
        for name, src, mode in entries:
            r = run(src, mode, args.rounds)
            times[name] += r["times"]
            print(f"cycle {cycle}: {name}: median {1e3 * statistics.median(r['times']):.2f} min "
                  f"{1e3 * min(r['times']):.2f} CPU ms (compile {r['compile_s']:.1f} s, zero-advantage share "
                  f"{r['zero']:.2f})", flush=True)
    ref = statistics.median(times["old eager"])
    print("| entry | CPU ms / update, median of all (min) | x the old eager, median (min) |\n|---|---|---|")
    for name, v in times.items():
        print(f"| {name} | {1e3 * statistics.median(v):.2f} ({1e3 * min(v):.2f}) | "
              f"{ref / statistics.median(v):.2f} ({min(times['old eager']) / min(v):.2f}) |")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
