"""Run-directory checkpoints for the shared training loop (atomic; weights + optimisers + RNG + buffer)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from flowft import __version__
from flowft.algos.base import Algorithm
from flowft.data.buffer import ReplayBuffer
from flowft.utils.checkpoint import (atomic_dir, commit_dir, load_modules, load_optimizers, save_modules,
                                     save_optimizers)
from flowft.utils.config_io import read_json, write_json
from flowft.utils.seeding import load_generators, save_generators


def save_checkpoint(ckpt_root: Path, step: int, config: dict, dims: dict, algo: Algorithm,
                    buffer: ReplayBuffer | None, loop_state: dict, collector_arrays: dict[str, np.ndarray],
                    keep: int) -> Path:
    final = ckpt_root / f"{step:010d}"
    tmp = atomic_dir(final)
    save_modules(tmp / "model.safetensors", algo.modules())
    write_json(tmp / "config.json", {"flowft_version": __version__, "format_version": 1, **config, "dims": dims})
    ts = tmp / "training_state"
    ts.mkdir()
    save_optimizers(ts, algo.optimizers())
    save_generators(ts / "rng.safetensors", algo.generators())
    write_json(ts / "state.json", {**loop_state, "algo": algo.extra_state()})
    save_np({k: np.ascontiguousarray(v) for k, v in collector_arrays.items()}, str(ts / "collector.safetensors"))
    if buffer is not None:
        buffer.save(tmp / "buffer.safetensors")
    commit_dir(tmp, final)
    (ckpt_root / "last.txt.tmp").write_text(final.name)
    (ckpt_root / "last.txt.tmp").replace(ckpt_root / "last.txt")
    old = sorted(p for p in ckpt_root.iterdir() if p.is_dir() and p.name.isdigit())[:-keep]
    for p in old:
        shutil.rmtree(p)
    return final


def check_compatible(ckpt_config: dict, config: dict, dims: dict, where: Path) -> None:
    """A checkpoint must come from the same algorithm, dims and architecture as the run loading it."""
    if ckpt_config.get("dims") != dims:
        raise ValueError(f"checkpoint {where}: env dims {ckpt_config.get('dims')} differ from this run's {dims}")
    if ckpt_config.get("algo_name") != config["algo_name"]:
        raise ValueError(f"checkpoint {where}: algorithm '{ckpt_config.get('algo_name')}' but this run is "
                         f"'{config['algo_name']}'")
    if ckpt_config.get("algo") != config["algo"]:
        diff = sorted(k for k in config["algo"] if ckpt_config.get("algo", {}).get(k) != config["algo"][k])
        raise ValueError(f"checkpoint {where}: algorithm config differs in {diff} (checkpoint from another config)")


def load_checkpoint(path: Path, config: dict, dims: dict, algo: Algorithm, buffer: ReplayBuffer | None):
    """Restore algorithm + buffer in place; returns (loop_state, collector_arrays)."""
    check_compatible(read_json(path / "config.json"), config, dims, path)
    load_modules(path / "model.safetensors", algo.modules())
    ts = path / "training_state"
    load_optimizers(ts, algo.optimizers())
    load_generators(ts / "rng.safetensors", algo.generators())
    state = read_json(ts / "state.json")
    algo.load_extra_state(state["algo"])
    if buffer is not None:
        if not (path / "buffer.safetensors").exists():
            raise FileNotFoundError(f"{path}: no buffer.safetensors (run was saved with save_buffer=False)")
        buffer.load(path / "buffer.safetensors")
    return state, load_np(str(ts / "collector.safetensors"))
