"""`flowft eval`: evaluate any checkpoint with the same `evaluate()` used during training."""

from __future__ import annotations

from pathlib import Path

import torch

from flowft.deploy import _load_actor, resolve_checkpoint
from flowft.envs.make import make_vec_env
from flowft.registry import get_algorithm, get_task
from flowft.train.evaluate import evaluate
from flowft.utils.checkpoint import load_modules
from flowft.utils.config_io import read_json


def _act_fns(ckpt: Path, cfg: dict, samplers, device: torch.device, seed: int):
    """sampler name -> act(obs) built from the checkpoint (BC checkpoints have no critic, so no `bon`)."""
    if cfg.get("kind") == "bc":
        if "bon" in samplers:
            raise ValueError(f"{ckpt} is a BC checkpoint (no critic): use --samplers ode sde")
        policy, _ = _load_actor(ckpt)
        policy.to(device)
        gen = torch.Generator(device=device).manual_seed(seed)
        return {"ode": lambda o: policy.sample_ode(o, generator=gen),
                "sde": lambda o: policy.sample_sde(o, 1, generator=gen).actions[0]}, cfg["task"]
    from flowft.config import load_train_config

    tcfg = load_train_config(cfg)
    d = cfg["dims"]
    algo = get_algorithm(tcfg.algo_name).cls(tcfg.algo, d["obs_dim"], d["act_dim"], d["chunk_len"], device, seed)
    load_modules(ckpt / "model.safetensors", algo.modules())
    gen = torch.Generator(device=device).manual_seed(seed)
    return {m: (lambda o, m=m: algo.act(o, m, generator=gen)) for m in ("ode", "sde", "bon")}, tcfg.run.task


def run_eval(path: str, samplers, episodes: int, envs: int, seed: int, device: str, video: bool) -> dict:
    ckpt = resolve_checkpoint(path)
    cfg = read_json(ckpt / "config.json")
    dev = torch.device(device)
    fns, task_name = _act_fns(ckpt, cfg, samplers, dev, seed)
    task = get_task(task_name)
    venv = make_vec_env(task, envs)
    out = {s: evaluate(fns[s], venv, task.chunk_len, episodes, seed=seed, stream=0, device=dev) for s in samplers}
    venv.close()
    if video:
        record_videos(fns, samplers, task, ckpt / "videos", seed, dev)
    return out


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
