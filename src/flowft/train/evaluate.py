"""One evaluation routine for training-time eval, BC clipping and `flowft eval` (same numbers everywhere)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from flowft.envs.make import make_vec_env, reset_vec_env
from flowft.train.collector import ActFn, ChunkCollector
from flowft.utils.logging import console


def eval_stream(seed: int, evals: int) -> tuple[int, int, int]:
    """(reset seed, reset stream, sampler-generator seed) of evaluation number `evals` (0: the step-0 one) of a
    finetuning run of seed `seed`. One definition for the training loop, the Ray eval worker and the BC gate's start
    read (algos/bc_gate.py), which re-reads exactly the episodes a run from the saved BC evaluates at step 0."""
    return seed + 10_000, evals, seed * 1_000_003 + evals


def bc_start_read(run) -> dict[str, float] | None:
    """The step-0 ODE evaluation of a run (RunConfig `run`) from its BC checkpoint, when that BC's gate already
    read exactly those episodes (its start read, algos/bc_gate.py: the same eval_stream seed, episode count, eval
    envs, task and device); None otherwise (the run then evaluates)."""
    from flowft.utils.config_io import read_json

    data = read_json(Path(run.bc_checkpoint) / "config.json")
    bc, res = data.get("bc", {}), data.get("result", {})
    start = {k: res.get(f"bc/start_{k}") for k in ("success", "return", "success_length", "episodes")}
    same = (bc.get("confirm_start") and bc.get("confirm_sampler") == "ode"
            and (bc.get("seed") if bc.get("start_seed") is None else bc.get("start_seed")) == run.seed
            and bc.get("start_eval_envs") == run.eval_envs and bc.get("confirm_episodes") == run.eval_episodes
            and start["episodes"] == run.eval_episodes and bc.get("task") == run.task
            and bc.get("device") == run.device)
    return start if same and None not in start.values() else None


def evaluate(act_fn: ActFn, venv: gym.vector.VectorEnv, chunk_len: int, episodes: int, seed: int, stream: int,
             device: torch.device, frames: list | None = None, progress: str | None = None) -> dict[str, float]:
    """Run `episodes` episodes (ceil(episodes/N) rounds on N envs, distinct reset seeds per round/env).

    Episodes are kept in (round, env) order, so early-finishing (successful) episodes are not over-counted.
    Returns success rate, mean return, mean length of successful episodes and the episode count.
    If `frames` is a list, env 0's rendered frames of its first episode are appended to it. `progress`: the label of
    a tqdm bar over the counted episodes (with ETA; shown on a terminal only, removed when done).
    """
    N = venv.num_envs
    rounds = math.ceil(episodes / N)
    col = ChunkCollector(venv, chunk_len, device)
    col.start(reset_vec_env(venv, seed, stream))
    done_count = np.zeros(N, np.int64)
    results: dict[tuple[int, int], dict] = {}
    bar = _bar(progress, episodes)
    while (done_count < rounds).any():
        if frames is not None and done_count[0] == 0:
            frames.append(venv.call("render")[0])
        res = col.step(act_fn)
        for ep in res.finished:
            n = ep["env"]
            if done_count[n] < rounds:
                results[(int(done_count[n]), n)] = ep
                if bar is not None and int(done_count[n]) * N + n < episodes:  # an episode that is counted
                    bar.update(1)
            done_count[n] += 1
    if bar is not None:
        bar.close()
    eps = [results[k] for k in sorted(results)][:episodes]
    succ = np.array([e["success"] for e in eps], float)
    lengths = [e["length"] for e in eps if e["success"]]
    return {"success": float(succ.mean()), "return": float(np.mean([e["return"] for e in eps])),
            "success_length": float(np.mean(lengths)) if lengths else float("nan"), "episodes": float(len(eps))}


def _bar(label: str | None, episodes: int):
    if not label:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI); leave=False: the result line replaces it
    return tqdm(total=episodes, desc=label, unit="ep", leave=False, disable=None, dynamic_ncols=True)


def record_videos(fns: dict[str, ActFn], samplers, task, out_dir: Path, seed: int, device) -> list[Path]:
    """One rendered episode per sampler to out_dir/eval_SAMPLER.mp4, offscreen (MUJOCO_GL defaults to egl; set
    osmesa for CPU-only GL). Used by `flowft eval --video` and by training's --run.video-every."""
    from flowft.utils.video import write_mp4

    os.environ.setdefault("MUJOCO_GL", "egl")
    venv = make_vec_env(task, 1, render=True, vectorization="sync")
    paths = []
    try:
        for s in samplers:
            frames: list = []
            evaluate(fns[s], venv, task.chunk_len, 1, seed=seed, stream=1, device=device, frames=frames)
            paths.append(write_mp4(Path(out_dir) / f"eval_{s}.mp4", frames))
            console(f"video: {paths[-1]} ({len(frames)} frames)")
    finally:
        venv.close()
    return paths
