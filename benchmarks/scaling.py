"""Scaling benchmark for distributed acting (issue 21, docs/scaling.md): env steps/s with 1, 2, 4, 8 Ray env
workers on a simulated expensive simulator, as a ratio to 1 worker.

    python benchmarks/scaling.py [--workers 1 2 4 8] [--sleep 0.02] [--seconds 12] [--utd 0] [--ray-address auto]

`toy-slow` is the toy task whose `step` sleeps `--sleep` seconds (20 ms: ~50 steps/s per env, robosuite-like), so
one env per worker bounds a worker at 1/sleep steps/s and N workers at N/sleep whatever the machine's free cores: the
benchmark measures the actor-learner plumbing (Ray messages, buffer writes, weight broadcasts, acting), not the CPU.
Each configuration is a real `DistTrainer` run (OGPO+CA tiny preset, 1 env per worker, 8 steps per message) of
about `--seconds` seconds; env steps/s are read from its metrics row (time/sps, start-up and evaluation excluded).
`--utd 0` (default) measures acting and ingestion alone; with UTD > 0 the learner's updates bound the rate at
1 / (UTD x update time), which is measured and printed as the learner's limit. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from flowft.envs.toy import ToyReachEnv, env_meta, generate_episodes
from flowft.registry import TaskSpec, get_algorithm, get_task, register_task

ALGO = "ogpo-plus-ca"


class SlowToyEnv(ToyReachEnv):
    """The toy reaching task with an expensive `step` (a simulator or a robot): it sleeps, it does not compute."""

    sleep = 0.02

    def step(self, action):
        time.sleep(self.sleep)
        return super().step(action)


def register_slow_task(sleep: float) -> TaskSpec:
    """`toy-slow`: the spec travels to the Ray workers pickled (class and sleep included)."""
    get_task("toy")  # the built-in tasks first
    env_cls = type("SlowToyEnv", (SlowToyEnv,), {"sleep": sleep})
    return register_task(TaskSpec(name="toy-slow", make=lambda render=False: env_cls(), meta=env_meta,
                                  generate=lambda n, seed, action_noise=0.1: generate_episodes(n, seed, action_noise),
                                  vectorization="sync", chunk_len=4, gamma=0.99, denoise_steps=5))


def quick_bc(root: Path) -> Path:
    """A short BC checkpoint on the toy task (throughput does not depend on how good the policy is)."""
    from flowft.algos.bc import pretrain
    from flowft.data.readers.hdf5 import write_demos
    from flowft.presets import bc_preset
    from flowft.registry import get_task

    task = get_task("toy")
    write_demos(root / "toy.hdf5", task.generate(40, 0, 0.1), task.meta())
    ckpt, _ = pretrain(bc_preset("toy", "tiny", str(root / "toy.hdf5"), steps=100, eval_every=100, clip=False,
                                 eval_episodes=8, eval_envs=8, out_dir=str(root), run_name="bc"))
    return ckpt


def update_seconds(utd_updates: int = 30) -> float:
    """The learner's seconds per update (tiny preset, synthetic buffer, this process)."""
    from flowft.presets import train_preset
    from flowft.train.fastpath import synthetic_buffer

    algo = get_algorithm(ALGO).cls(train_preset(ALGO, "toy", "tiny").algo, 6, 2, 4, torch.device("cpu"), 0)
    buf = synthetic_buffer(6, 2, 4)
    algo.update(buf)
    t0 = time.perf_counter()
    for _ in range(utd_updates):
        algo.update(buf)
    return (time.perf_counter() - t0) / utd_updates


def measure(workers: int, bc: Path, out: Path, sleep: float, seconds: float, utd: float) -> float:
    """Env steps/s of one distributed run with `workers` env workers of 1 env each."""
    from flowft.dist.driver import DistTrainer
    from flowft.presets import train_preset

    steps = max(64, int(workers * seconds / sleep) // 8 * 8)
    cfg = train_preset(ALGO, "toy-slow", "tiny", bc_checkpoint=str(bc), out_dir=str(out), run_name=f"w{workers}-u{utd}",
                       env_workers=workers, num_envs=1, worker_steps=8, env_steps=steps, utd=utd,
                       start_training=64 if utd else steps, eval_every=10 * steps, eval_episodes=1, eval_envs=1,
                       eval_samplers=("ode",), ckpt_every=10 * steps, critic_diag_episodes=0, plot=False,
                       buffer_capacity=max(20_000, 32 * workers))
    cfg = replace(cfg, run=replace(cfg.run, log=replace(cfg.run.log, log_every=steps)))
    trainer = DistTrainer(cfg)
    trainer.run()
    with open(trainer.run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("time/sps")]
    return float(rows[-1]["time/sps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--sleep", type=float, default=0.02, help="seconds per env step")
    ap.add_argument("--seconds", type=float, default=12.0, help="target duration of each run")
    ap.add_argument("--utd", type=float, default=0.0, help="updates per received env step (0 = acting only)")
    ap.add_argument("--ray-address", default=None, help="existing cluster (auto); default: a local Ray")
    args = ap.parse_args()
    import ray

    register_slow_task(args.sleep)
    t_update = update_seconds()
    ray.init(address=args.ray_address or "local", num_cpus=None if args.ray_address else os.cpu_count(),
             include_dashboard=False, configure_logging=False, log_to_driver=False)
    root = Path(tempfile.mkdtemp(prefix="flowft-scaling-"))
    bc, rates = quick_bc(root), {}
    for n in args.workers:
        rates[n] = measure(n, bc, root, args.sleep, args.seconds, args.utd)
        print(f"{n} workers: {rates[n]:.1f} env steps/s", file=sys.stderr)
    ray.shutdown()
    base = rates[min(rates)] / min(rates)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average {load}, "
          f"ray {ray.__version__}, step sleep {args.sleep * 1e3:.0f} ms, UTD {args.utd:g}\n")
    print("| env workers | env steps/s | ratio to 1 worker | ideal (N / sleep) |\n|---|---|---|---|")
    for n, r in rates.items():
        print(f"| {n} | {r:.1f} | {r / base:.2f} | {n / args.sleep:.0f} |")
    print(f"\nlearner: {t_update * 1e3:.1f} ms per update (tiny preset, this machine) -> at UTD 0.25 it takes at most "
          f"{1 / (0.25 * t_update):.0f} env steps/s")


if __name__ == "__main__":
    main()
