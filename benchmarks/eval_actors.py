"""Evaluate one OGPO-family training checkpoint several ways on the same reset seeds: the ODE policy of the current
actor (what training evaluates), the ODE policy of the EMA (target) actor, the same two from the zero start noise
x0 = 0 (one deterministic chunk per state, FPO++'s "zero-sampling"), and Best-of-N with the critic (what the method
deploys). A diagnostic for results.md section 9: is a falling ODE curve the actor's last steps, the spread of its
start noise, or the policy?

    python benchmarks/eval_actors.py CHECKPOINT_DIR... [--episodes 64] [--envs 8] [--seed 777]
        [--samplers ode ode_ema ode_zero ode_ema_zero bon] [--out FILE.jsonl]

Envs are in-process (sync), so the numbers depend on (seed, envs) only; one JSON line per (checkpoint, sampler).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flowft.deploy import load_algorithm
from flowft.envs.make import make_vec_env
from flowft.policies.flow import sample_ode_zero
from flowft.registry import get_task
from flowft.train.evaluate import evaluate
from flowft.utils.seeding import seed_everything


SAMPLERS = {"ode": lambda algo, o, g: algo.actor.sample_ode(o, generator=g),
            "ode_ema": lambda algo, o, g: algo.actor_target.sample_ode(o, generator=g),
            "ode_zero": lambda algo, o, g: sample_ode_zero(algo.actor, o),
            "ode_ema_zero": lambda algo, o, g: sample_ode_zero(algo.actor_target, o),
            "bon": lambda algo, o, g: algo.act(o, "bon", generator=g)}
DEFAULT_SAMPLERS = ("ode", "ode_ema", "bon")


def eval_actors(ckpt: Path, episodes: int, envs: int, seed: int,
                samplers: tuple[str, ...] = DEFAULT_SAMPLERS) -> list[dict]:
    algo, tcfg = load_algorithm(ckpt, torch.device("cpu"), seed)
    if not hasattr(algo, "actor_target"):
        raise ValueError(f"{ckpt}: algorithm '{tcfg.algo_name}' has no EMA actor (OGPO-family checkpoints only)")
    task = get_task(tcfg.run.task)
    venv = make_vec_env(task, envs, vectorization="sync")
    rows = []
    try:
        for name in samplers:
            act = SAMPLERS[name]
            seed_everything(seed)
            gen, start = torch.Generator().manual_seed(seed), time.time()
            res = evaluate(lambda o: act(algo, o, gen), venv, task.chunk_len, episodes, seed=seed, stream=0,
                           device=torch.device("cpu"))
            rows.append({"ckpt": str(ckpt), "sampler": name, **res, "secs": round(time.time() - start, 1)})
    finally:
        venv.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(DEFAULT_SAMPLERS))
    p.add_argument("--out", type=Path, default=None, help="also append the JSON lines here")
    a = p.parse_args()
    torch.set_num_threads(1)
    for ckpt in a.checkpoints:
        for row in eval_actors(ckpt, a.episodes, a.envs, a.seed, tuple(a.samplers)):
            print(json.dumps(row), flush=True)
            if a.out:
                with a.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
