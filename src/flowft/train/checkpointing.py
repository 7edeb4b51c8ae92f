"""Run-directory checkpoints for the shared training loop (atomic; weights + optimisers + RNG + buffer).

A checkpoint is written only from finite weights and optimiser state, sealed with a manifest (utils/manifest.py),
and rotation never removes a good checkpoint unless `keep` newer good ones exist, so the newest complete checkpoint
of a run is always one that can be trusted.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_np, save_file as save_np

from flowft import __version__
from flowft.algos.base import Algorithm, DivergenceError
from flowft.data.buffer import ReplayBuffer
from flowft.utils.checkpoint import (CheckpointError, IncompatibleCheckpointError, NoCheckpointError, atomic_dir,
                                     commit_dir, latest_checkpoint, load_modules, load_optimizers, nonfinite,
                                     optimizer_tensors, read_checkpoint_json, read_tensors, repair_checkpoints,
                                     save_modules, save_optimizers, step_dirs, write_pointer)
from flowft.utils.config_io import write_json
from flowft.utils.manifest import CHECKPOINT_FORMAT, check_dir
from flowft.utils.seeding import load_generators, save_generators


def _nonfinite_state(algo: Algorithm) -> list[str]:
    """Names of the non-finite tensors of every module (EMA and target copies included) and optimiser state."""
    return nonfinite(module_tensors(algo)) + nonfinite(optimizer_tensors(algo.optimizers()))


def weight_rms(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Root-mean-square of each module's tensors (keys `<module>.<name>`, as in model.safetensors): the scale the
    growth guard compares with the run's start."""
    groups: dict[str, list[torch.Tensor]] = {}
    for k, v in tensors.items():
        if v.is_floating_point():
            groups.setdefault(k.split(".")[0], []).append(v.detach().reshape(-1).double())
    return {m: float(torch.cat(vs).square().mean().sqrt()) for m, vs in groups.items()}


def module_tensors(algo: Algorithm) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name, m in algo.modules().items() for k, v in m.state_dict().items()}


def module_weights(algo: Algorithm) -> dict[str, torch.Tensor]:
    """The trainable weights only: normalisers' statistics are data scales, not something an update can wreck."""
    return {f"{name}.{k}": v for name, m in algo.modules().items() for k, v in m.named_parameters()}


def growth(rms: dict[str, float], start: dict[str, float] | None) -> dict[str, float]:
    """Each module's RMS as a multiple of its start (modules without a nonzero start are left out)."""
    return {m: v / start[m] for m, v in rms.items() if start and start.get(m)}


def check_weight_growth(algo: Algorithm, start: dict[str, float] | None, limit: float, step: int) -> None:
    """Finite weights can still be wrecked (on toy, lr 10 kept every tensor finite while the actor's RMS grew ~97x
    its start within 160 env steps; the published runs stay within ~1.5x): refuse them like non-finite ones.
    limit 0 = off."""
    over = {m: g for m, g in growth(weight_rms(module_weights(algo)), start).items() if limit and g > limit}
    if over:
        raise DivergenceError(f"weights at env step {step} grew past --run.max-weight-growth {limit:g}x their RMS at "
                              f"the run's start ({', '.join(f'{m} {g:.3g}x' for m, g in over.items())}); its "
                              "checkpoint was not written")


def save_checkpoint(ckpt_root: Path, step: int, config: dict, dims: dict, algo: Algorithm,
                    buffer: ReplayBuffer | None, loop_state: dict, collector_arrays: dict[str, np.ndarray],
                    keep: int) -> Path:
    """Write checkpoint `<step>` atomically. Raises DivergenceError, writing nothing, when any weight or optimiser
    tensor is non-finite, or a module's weights grew past `run.max_weight_growth` times their RMS at the run's start
    (`loop_state["weight_rms"]`): the previous checkpoint stays the newest."""
    bad = _nonfinite_state(algo)
    if bad:
        raise DivergenceError(f"non-finite model/optimiser state at env step {step} in {bad[:4]}"
                              f"{f' and {len(bad) - 4} more' if len(bad) > 4 else ''}; its checkpoint was not written")
    check_weight_growth(algo, loop_state.get("weight_rms"), config["run"].get("max_weight_growth", 0.0), step)
    settle_checkpoints(ckpt_root)  # a crash inside an earlier commit may have left .tmp/.old copies
    final = ckpt_root / f"{step:010d}"
    tmp = atomic_dir(final)
    save_modules(tmp / "model.safetensors", algo.modules())
    write_json(tmp / "config.json", {"flowft_version": __version__, "format_version": CHECKPOINT_FORMAT, **config,
                                     "dims": dims})
    ts = tmp / "training_state"
    ts.mkdir()
    save_optimizers(ts, algo.optimizers())
    save_generators(ts / "rng.safetensors", algo.generators())
    write_json(ts / "state.json", {**loop_state, "algo": algo.extra_state()})
    save_np({k: np.ascontiguousarray(v) for k, v in collector_arrays.items()}, str(ts / "collector.safetensors"))
    if buffer is not None:
        buffer.save(tmp / "buffer.safetensors")
    commit_dir(tmp, final)
    write_pointer(ckpt_root, final.name)
    rotate_checkpoints(ckpt_root, step, keep)
    return final


def settle_checkpoints(ckpt_root: Path) -> None:
    """Repair what a crash inside `commit_dir` left (the run's lock holder only), saying what was done."""
    for line in repair_checkpoints(ckpt_root):
        print(f"checkpoints: {line}", file=sys.stderr)


def rotate_checkpoints(ckpt_root: Path, step: int, keep: int) -> list[Path]:
    """Keep the newest `keep` (at least 1) usable checkpoints up to `step`, the one just written included, and
    remove every dir older than the oldest of them. Damaged or inconsistent dirs never count as kept, so they
    cannot push a good checkpoint out; dirs beyond `step` (left by an earlier, longer attempt) are left for the
    run to overwrite when it gets there. Returns the removed dirs."""
    usable = [s for s, p in step_dirs(ckpt_root) if s <= step and check_dir(p, deep=False).usable]
    kept = usable[:max(1, keep)]
    if not kept:
        return []
    removed = [p for s, p in step_dirs(ckpt_root) if s < kept[-1]]
    for p in removed:
        shutil.rmtree(p)
    return removed


def kept_checkpoint_note(run_dir: Path, weights: set[str] = frozenset()) -> str:
    """For the divergence guard: which checkpoint a stopped run keeps, after re-checking that it is intact and
    finite, and how far its `weights` (model.safetensors keys) grew (so the message is a statement of fact)."""
    try:
        path = latest_checkpoint(run_dir)
    except NoCheckpointError:
        return "No checkpoint was written before it, so the run cannot be resumed; start it again with a lower lr."
    try:
        model = read_tensors(path / "model.safetensors")
        bad = nonfinite(model) + nonfinite(read_tensors(path / "training_state" / "optim.safetensors"))
        start = read_checkpoint_json(path / "training_state" / "state.json").get("weight_rms")
    except CheckpointError as e:
        return f"The newest checkpoint cannot be read: {e}."
    if bad:
        return f"The newest checkpoint {path} holds non-finite tensors {bad[:4]} (written by an earlier flowft)."
    how = "manifest verified" if check_dir(path).verified else "written before manifests, so unverified"
    g = growth(weight_rms({k: v for k, v in model.items() if k in weights}), start)
    scale = f"weights at most {max(g.values()):.2f}x their start RMS, " if g else ""
    return (f"The last good checkpoint, env step {int(path.name.split('.')[0])} ({path}: finite, {scale}{how}), is "
            "kept; nothing was saved after it.")


def _with_defaults(ckpt_config: dict) -> dict:
    """The checkpoint's algorithm config as a run's config.json loads: fields added to flowft after the checkpoint
    was written take their defaults (so a newer flowft resumes an older run whose settings it keeps). A config this
    flowft cannot read (an unknown field or algorithm) is compared as saved, and so differs."""
    from flowft.config import load_algo_config
    from flowft.utils.config_io import to_dict

    algo = ckpt_config.get("algo", {})
    try:
        return to_dict(load_algo_config(ckpt_config["algo_name"], algo))
    except (KeyError, ValueError, TypeError):
        return algo


def check_compatible(ckpt_config: dict, config: dict, dims: dict, where: Path) -> None:
    """A checkpoint must come from the same algorithm, dims and architecture as the run loading it."""
    if ckpt_config.get("dims") != dims:
        raise IncompatibleCheckpointError(f"checkpoint {where}: env dims {ckpt_config.get('dims')} differ from this "
                                          f"run's {dims}")
    if ckpt_config.get("algo_name") != config["algo_name"]:
        raise IncompatibleCheckpointError(f"checkpoint {where}: algorithm '{ckpt_config.get('algo_name')}' but this "
                                          f"run is '{config['algo_name']}'")
    saved = _with_defaults(ckpt_config)
    if saved != config["algo"]:
        diff = sorted(k for k in {**saved, **config["algo"]} if saved.get(k) != config["algo"].get(k))
        raise IncompatibleCheckpointError(f"checkpoint {where}: algorithm config differs in {diff} (checkpoint from "
                                          "another config)")


def load_checkpoint(path: Path, config: dict, dims: dict, algo: Algorithm, buffer: ReplayBuffer | None):
    """Restore algorithm + buffer in place; returns (loop_state, collector_arrays). Only the process that will
    write this run's checkpoints calls it, so it first settles copies a crash inside a commit left behind (a
    `<step>.old` found by `latest_checkpoint` becomes `<step>` again)."""
    settle_checkpoints(path.parent)
    path = path.parent / path.name.split(".")[0]
    result = check_dir(path)
    if not result.usable:
        raise CheckpointError(f"cannot resume from damaged checkpoint: {result.problem}")
    check_compatible(read_checkpoint_json(path / "config.json"), config, dims, path)
    load_modules(path / "model.safetensors", algo.modules())
    ts = path / "training_state"
    load_optimizers(ts, algo.optimizers())
    try:
        load_generators(ts / "rng.safetensors", algo.generators())
        arrays = load_np(str(ts / "collector.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path}: unreadable RNG or collector state ({e})") from e
    state = read_checkpoint_json(ts / "state.json")
    algo.load_extra_state(state["algo"])
    if buffer is not None:
        if not (path / "buffer.safetensors").exists():
            raise CheckpointError(f"{path}: no buffer.safetensors (run was saved with save_buffer=False)")
        buffer.load(path / "buffer.safetensors")
    return state, arrays
