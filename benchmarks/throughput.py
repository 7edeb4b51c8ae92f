"""Throughput benchmark (issue 6): simulator-alone env steps/s vs end-to-end training env steps/s, in one run.

    python benchmarks/throughput.py --task lift --algos ogpo-plus-ca dsrl --bc-checkpoint BC_DIR [--utd 0.25]
        [--steps 2000] [--warmup 400] [--threads 1] [--overlap off on] [--compile off on] [--precision fp32]
        [--vectorization sync async] [--out docs/results/throughput.csv]

For each task it builds the preset's vector env (same num_envs and vectorization as training), warms the simulator
up (robosuite's numba JIT makes the first few hundred steps ~10x slower), then times `--steps` env steps of the
chunk collector with uniformly random action chunks: the simulator-alone rate. Then, for each algorithm, a real
training run from the BC checkpoint (`--warmup` env steps before the first update, then full updates at `--utd`;
a preset's critic-only warm-up is switched off so the actor step is timed too) whose
throughput is read from the last log window of its metrics.csv (`time/sps_window`, `time/update_frac_window`,
evaluation excluded), once per `--overlap` setting (run.overlap_updates: updates while the envs step) and `--compile`
setting (run.compile, with run.precision = `--precision`: the learner's fast path, issue 18). With
`--vectorization`, the simulator-alone rate and every training run are timed once per listed setting (in the given
order; repeat a setting to see the drift), and each method name gets the setting (`+sync`, `+async`). All are
measured in the same process, one after the other, so their ratio is comparable on
a shared machine; the absolute numbers are not.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from flowft.envs.make import make_vec_env, reset_vec_env
from flowft.presets import train_preset
from flowft.registry import get_task
from flowft.train.collector import ChunkCollector
from flowft.train.loop import Trainer
from flowft.utils.logging import LogConfig


def simulator_alone(task_name: str, num_envs: int, steps: int, warmup: int, seed: int = 0,
                    vectorization: str | None = None) -> float:
    """Env steps/s of the chunk collector with random chunks (no learner, no acting network)."""
    task = get_task(task_name)
    venv = make_vec_env(task, num_envs, vectorization=vectorization)
    try:
        col = ChunkCollector(venv, task.chunk_len, torch.device("cpu"))
        col.start(reset_vec_env(venv, seed, 0))
        low, high = venv.single_action_space.low, venv.single_action_space.high
        rng = np.random.default_rng(seed)

        def act(obs):  # [n, Do] -> [n, H, Da] uniform in the action box
            u = rng.uniform(low, high, size=(obs.shape[0], task.chunk_len, low.shape[0]))
            return torch.as_tensor(u, dtype=torch.float32)

        for _ in range(max(1, warmup // num_envs)):
            col.step(act)
        t = time.perf_counter()
        n = max(1, steps // num_envs)
        for _ in range(n):
            col.step(act)
        return n * num_envs / (time.perf_counter() - t)
    finally:
        venv.close()


def training(algo: str, task: str, bc: str, steps: int, warmup: int, utd: float, threads: int, out: Path,
             overlap: bool = False, compile: bool = False, precision: str = "fp32",
             vectorization: str = "auto") -> dict:
    """End-to-end env steps/s and learner share of the last log window of a short real training run."""
    # log windows of `warmup` env steps: the last one lies entirely in the training phase (steps % warmup == 0)
    cfg = train_preset(algo, task, "tiny", bc_checkpoint=bc, out_dir=str(out), vectorization=vectorization,
                       run_name=f"{algo}-{task}-{overlap}-{compile}-{precision}-{vectorization}", compile=compile,
                       precision=precision,
                       env_steps=warmup + steps, start_training=warmup, utd=utd, eval_every=10 * (warmup + steps),
                       ckpt_every=10 * (warmup + steps), eval_episodes=1, eval_envs=1, eval_samplers=("ode",),
                       plot=False, threads=threads, save_buffer=False,
                       overlap_updates=overlap, log=LogConfig(log_every=warmup, progress=False))
    if hasattr(cfg.algo, "critic_warmup"):  # time full updates (actor + critic), not the critic-only warm-up
        cfg = replace(cfg, algo=replace(cfg.algo, critic_warmup=0))
    trainer = Trainer(cfg)
    trainer.run()
    with open(trainer.run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("time/sps_window")]
    last = rows[-1]
    return {"sps": float(last["time/sps_window"]), "update_frac": float(last["time/update_frac_window"]),
            "num_envs": cfg.run.num_envs, "updates": int(float(last["grad_steps"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="lift")
    ap.add_argument("--algos", nargs="+", default=["ogpo-plus-ca"])
    ap.add_argument("--bc-checkpoint", required=True)
    ap.add_argument("--utd", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--overlap", nargs="+", choices=["off", "on"], default=["off", "on"],
                    help="run.overlap_updates settings to time")
    ap.add_argument("--compile", nargs="+", choices=["off", "on"], default=["off"],
                    help="run.compile settings to time (the learner's fast path)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16-nograd", "bf16"],
                    help="run.precision of every training run")
    ap.add_argument("--vectorization", nargs="+", choices=["sync", "async"], default=None,
                    help="vector-env settings to time, in order (default: the task preset's, unnamed)")
    ap.add_argument("--out", default=None, help="append rows to this CSV")
    args = ap.parse_args()
    if args.steps % args.warmup:
        ap.error(f"--steps ({args.steps}) must be a multiple of --warmup ({args.warmup})")
    torch.set_num_threads(args.threads)
    num_envs = train_preset(args.algos[0], args.task, "tiny").run.num_envs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, vec in enumerate(args.vectorization or [None]):
            tag = f"+{vec}" if vec else ""
            sim = simulator_alone(args.task, num_envs, args.steps, args.warmup, vectorization=vec)
            print(f"{args.task}: simulator alone{tag} {sim:.0f} env steps/s ({num_envs} envs)")
            rows.append({"task": args.task, "method": "simulator-alone" + tag, "utd": 0, "num_envs": num_envs,
                         "sps": round(sim, 1), "update_frac": 0.0, "fraction_of_sim": 1.0})
            for algo in args.algos:
                for ov, comp in [(ov, comp) for comp in args.compile for ov in args.overlap]:
                    r = training(algo, args.task, args.bc_checkpoint, args.steps, args.warmup, args.utd, args.threads,
                                 Path(tmp) / str(i), overlap=ov == "on", compile=comp == "on", precision=args.precision,
                                 vectorization=vec or "auto")
                    method = algo + ("+overlap" if ov == "on" else "") + ("+compile" if comp == "on" else "")
                    method += ("" if args.precision == "fp32" else f"+{args.precision}") + tag
                    rows.append({"task": args.task, "method": method, "utd": args.utd, "num_envs": r["num_envs"],
                                 "sps": round(r["sps"], 1), "update_frac": round(r["update_frac"], 3),
                                 "fraction_of_sim": round(r["sps"] / sim, 3)})
                    print(f"{method}: {r['sps']:.0f} env steps/s = {r['sps'] / sim:.1%} of the simulator alone "
                          f"(learner {r['update_frac']:.0%} of wall time, {r['updates']} updates)")
    if args.out:
        path = Path(args.out)
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
