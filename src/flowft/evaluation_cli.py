"""`flowft eval`: evaluate any checkpoint with the same `evaluate()` used during training."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from flowft.deploy import act_functions, resolve_checkpoint
from flowft.envs.make import make_vec_env
from flowft.registry import get_task
from flowft.train.evaluate import evaluate
from flowft.utils.checkpoint import read_checkpoint_json


def run_eval(path: str, samplers, episodes: int, envs: int, seed: int, device: str, video: bool) -> dict:
    ckpt = resolve_checkpoint(path)
    cfg = read_checkpoint_json(ckpt / "config.json")
    dev = torch.device(device)
    fns, _, _ = act_functions(ckpt, dev, seed)
    missing = [s for s in samplers if s not in fns]
    if missing:
        raise ValueError(f"{ckpt}: samplers {missing} not available for this checkpoint (available: {sorted(fns)}; "
                         "a BC checkpoint has no critic, so no `bon`)")
    task = get_task(checkpoint_task(cfg))
    venv = make_vec_env(task, envs)
    out = {s: evaluate(fns[s], venv, task.chunk_len, episodes, seed=seed, stream=0, device=dev) for s in samplers}
    venv.close()
    if video:
        record_videos(fns, samplers, task, ckpt / "videos", seed, dev)
    return out


def checkpoint_task(cfg: dict) -> str:
    """The task name in a BC or a training checkpoint's config.json."""
    return cfg["task"] if cfg.get("kind") == "bc" else cfg["run"]["task"]


EVAL_COLUMNS = ("checkpoint", "task", "sampler", "seed", "episodes", "success", "return", "success_length", "source")


def check_eval_csv(out: Path) -> None:
    """An existing --out file must be an eval table with our columns: never append to (or clobber) another file."""
    if out.exists():
        with out.open(newline="") as f:
            header = next(csv.reader(f), None)
        if tuple(header or ()) != EVAL_COLUMNS:
            raise ValueError(f"--out {out}: exists with columns {header}, not an eval table {list(EVAL_COLUMNS)}; "
                             "choose another file")


def append_eval_csv(out: Path, path: str, seed: int, results: dict) -> None:
    """One row per sampler; `checkpoint` is the resolved checkpoint dir (its name is the env step of a training
    checkpoint), `source` the digest of the code that evaluated it (utils/provenance.py)."""
    from flowft.utils.provenance import source_digest

    check_eval_csv(out)
    ckpt = resolve_checkpoint(path)
    task, source = checkpoint_task(read_checkpoint_json(ckpt / "config.json")), source_digest()
    new = not out.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(EVAL_COLUMNS)
        for sampler, r in results.items():
            w.writerow([str(ckpt), task, sampler, seed, int(r["episodes"]), r["success"], r["return"],
                        r["success_length"], source])


def record_videos(fns, samplers, task, out_dir: Path, seed: int, device) -> list[Path]:
    """One rendered episode per sampler, offscreen (MUJOCO_GL defaults to egl; set osmesa for CPU-only GL)."""
    import os

    from flowft.utils.video import write_mp4

    os.environ.setdefault("MUJOCO_GL", "egl")
    venv = make_vec_env(task, 1, render=True, vectorization="sync")
    paths = []
    for s in samplers:
        frames: list = []
        evaluate(fns[s], venv, task.chunk_len, 1, seed=seed, stream=1, device=device, frames=frames)
        paths.append(write_mp4(out_dir / f"eval_{s}.mp4", frames))
        print(f"video: {paths[-1]} ({len(frames)} frames)")
    venv.close()
    return paths
