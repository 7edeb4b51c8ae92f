"""Seeded-reset cost of the robosuite tasks, with and without the compiled-model cache (envs/robosuite_cache.py).

Every evaluation episode resets with a new seed, which rebuilds the robosuite model (envs/robosuite_tasks.py). This
times such resets and, for comparison in the same process, the same resets with a fresh MuJoCo compile of every XML
string (robosuite's own path), rounds alternating so that load drifts hit both alike; also an unseeded reset and
one env step, for scale.

    python benchmarks/reset_speed.py --tasks lift can --resets 10 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def _time_resets(env, seeds) -> float:
    t = time.perf_counter()
    for s in seeds:
        env.reset(seed=int(s))
    return (time.perf_counter() - t) / len(seeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="+", default=["lift", "can"])
    ap.add_argument("--resets", type=int, default=10, help="seeded resets (new seeds) per round and path")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import mujoco

    from flowft.envs import robosuite_cache
    from flowft.envs.robosuite_tasks import RobosuiteEnv

    fresh = lambda xml: mujoco.MjModel.from_xml_string(xml)  # noqa: E731  robosuite's own path
    cached = robosuite_cache.compiled_model
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, 1 process")
    print("| task | seeded reset, cached (s) | seeded reset, fresh compiles (s) | ratio | unseeded reset (s) "
          "| step (s) |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        env = RobosuiteEnv(task, seed=0)
        for k in range(3):  # numba and the first compiles
            env.reset(seed=10_000 + k)
            env.step(np.zeros(env.action_dim))
        times = {"cached": [], "fresh": []}
        seed = 1
        for _ in range(args.rounds):
            for path, fn in (("cached", cached), ("fresh", fresh)):
                robosuite_cache.compiled_model = fn
                seeds = range(seed, seed + args.resets)  # new seeds: every reset rebuilds
                seed += args.resets
                times[path].append(_time_resets(env, seeds))
        robosuite_cache.compiled_model = cached
        t = time.perf_counter()
        for _ in range(args.resets):
            env.reset()
        unseeded = (time.perf_counter() - t) / args.resets
        t = time.perf_counter()
        for _ in range(100):
            env.step(np.zeros(env.action_dim))
        step = (time.perf_counter() - t) / 100
        c, f = statistics.median(times["cached"]), statistics.median(times["fresh"])
        print(f"| {task} | {c:.3f} | {f:.3f} | {f / c:.2f}x | {unseeded:.4f} | {step:.4f} |", flush=True)
        env.close()


if __name__ == "__main__":
    main()
