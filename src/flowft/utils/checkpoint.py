"""Checkpoint I/O: safetensors weights, optimiser states as safetensors + JSON, atomic directory writes, and the
lookup of a run's newest usable checkpoint.

Layout of one checkpoint directory (conventions.md §B.3):
    model.safetensors            flat keys "<module>.<param>" (actor, actor_target, critic, critic_target, ...)
    config.json                  resolved run config + algo name + env dims + flowft version
    training_state/optim.safetensors, optim.json, rng.safetensors, state.json, collector.safetensors
    buffer.safetensors           replay buffer (optional)
    manifest.json                size + sha256 of every file above, written last (utils/manifest.py)
No file is ever unpickled, and no non-finite tensor is ever written or loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from flowft.errors import CheckpointError
from flowft.utils.config_io import write_json
from flowft.utils.manifest import CheckpointWarning, check_dir, fsync_path, write_manifest

__all__ = ["CheckpointError", "CheckpointWarning", "IncompatibleCheckpointError", "NoCheckpointError",
           "atomic_dir", "commit_dir", "latest_checkpoint", "load_modules", "load_optimizers", "nonfinite",
           "read_checkpoint_json", "read_tensors", "repair_checkpoints", "save_modules", "save_optimizers"]


class NoCheckpointError(CheckpointError, FileNotFoundError):
    """A run has no checkpoint, or none that is complete and undamaged."""


class IncompatibleCheckpointError(CheckpointError, ValueError):
    """A checkpoint is intact but belongs to another config (dims, algorithm, architecture)."""


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:  # header errors do not name the file: say which it is
        raise CheckpointError(f"{path}: unreadable safetensors file ({type(e).__name__}: {str(e)[:160]})") from e


def read_checkpoint_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({type(e).__name__}: {str(e)[:160]})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def save_modules(path: str | Path, modules: dict[str, nn.Module]) -> None:
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    bad = nonfinite(tensors)
    if bad:  # a poisoned file must never exist: whoever loads it would use it silently
        raise CheckpointError(f"{path}: not written, non-finite values in {bad[:5]}")
    save_file(tensors, str(path))


def load_modules(path: str | Path, modules: dict[str, nn.Module], strict: bool = True) -> None:
    """Load flat "<module>.<key>" tensors; shape mismatches give one message naming the tensor, non-finite tensors
    (a checkpoint written by a diverged run of an earlier flowft) are refused."""
    tensors = read_tensors(Path(path))
    bad = nonfinite(tensors)
    if bad:
        raise CheckpointError(f"checkpoint {path}: non-finite weights in {bad[:5]} (written by a diverged run); "
                              "refusing to load it")
    for name, m in modules.items():
        prefix = f"{name}."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        own = m.state_dict()
        if strict:
            missing = sorted(set(own) - set(sd))
            if missing:
                raise IncompatibleCheckpointError(f"checkpoint {path}: module '{name}' is missing tensors "
                                                  f"{missing[:5]}")
        for k, v in sd.items():
            if k in own and own[k].shape != v.shape:
                raise IncompatibleCheckpointError(
                    f"checkpoint {path}: '{name}.{k}' has shape {tuple(v.shape)}, this model expects "
                    f"{tuple(own[k].shape)} (checkpoint from another config?)")
        m.load_state_dict(sd, strict=strict)


def optimizer_tensors(optims: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    """Every tensor of the optimisers' states (Adam moments, step counts) as "<optim>/<param id>/<key>"."""
    return {f"{name}/{pid}/{k}": v for name, opt in optims.items() for pid, st in opt.state_dict()["state"].items()
            for k, v in st.items() if torch.is_tensor(v)}


def save_optimizers(directory: Path, optims: dict[str, torch.optim.Optimizer]) -> None:
    """Optimiser state dicts split into tensors (safetensors) and scalars/param-groups (JSON)."""
    tensors, meta = {}, {}
    for name, opt in optims.items():
        sd = opt.state_dict()
        scalars = {}
        for pid, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"{name}/{pid}/{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars[f"{pid}/{k}"] = v
        meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    save_file(tensors, str(directory / "optim.safetensors"))
    write_json(directory / "optim.json", meta)


def load_optimizers(directory: Path, optims: dict[str, torch.optim.Optimizer]) -> None:
    tensors = read_tensors(directory / "optim.safetensors")
    bad = nonfinite(tensors)
    if bad:
        raise CheckpointError(f"{directory / 'optim.safetensors'}: non-finite optimiser state in {bad[:5]}; "
                              "refusing to resume from it")
    meta = read_checkpoint_json(directory / "optim.json")
    for name, opt in optims.items():
        if name not in meta:
            raise CheckpointError(f"{directory / 'optim.json'}: no optimiser state for '{name}'")
        state: dict = {}
        for key, v in tensors.items():
            oname, pid, k = key.split("/", 2)
            if oname == name:
                state.setdefault(int(pid), {})[k] = v
        for key, v in meta[name]["scalars"].items():
            pid, k = key.split("/", 1)
            state.setdefault(int(pid), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})


# ------------------------------------------------------------------------------------------- atomic writes
def atomic_dir(final: Path) -> Path:
    """Return a temp sibling directory to fill; `commit_dir` renames it into place."""
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    """Seal `tmp` with its manifest, then rename it to `final`. Replacing an existing `final` takes two renames;
    a crash between them leaves `final.old` + `final.tmp`, both complete, which lookups and
    `repair_checkpoints` recognise."""
    write_manifest(tmp)
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    fsync_path(final.parent)  # the renames reach the disk


# ------------------------------------------------------------------------------------------------ lookup
_STEP_DIR = re.compile(r"(\d+)(\.old|\.tmp)?")


def step_dirs(ckpts: Path, suffixes: tuple[str, ...] = ("",)) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint dirs named `<digits><suffix>`, newest step first."""
    if not ckpts.is_dir():
        return []
    found = []
    for p in ckpts.iterdir():
        m = _STEP_DIR.fullmatch(p.name)
        if m and (m.group(2) or "") in suffixes and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, key=lambda sp: (-sp[0], sp[1].name))


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete, undamaged checkpoint of a run. `last.txt` is not trusted (it may be missing, empty,
    garbage or stale): every `<step>` dir is checked against its manifest, newest first, and a damaged one is
    skipped with a warning naming the damaged file. A `<step>.old` left by a crash inside `commit_dir` counts
    when its `<step>` dir is missing or damaged. Read-only: safe while another process trains."""
    ckpts = Path(run_dir) / "checkpoints"
    damaged = []
    for _, path in step_dirs(ckpts, ("", ".old")):
        result = check_dir(path)
        if result.usable:
            for problem in damaged:
                warnings.warn(f"damaged checkpoint skipped: {problem}; using {path}", CheckpointWarning,
                              stacklevel=2)
            return path
        damaged.append(result.problem)
    if damaged:
        raise NoCheckpointError(f"{run_dir}: no usable checkpoint, every one is damaged: {'; '.join(damaged)}")
    raise NoCheckpointError(f"{run_dir}: no checkpoint yet (no checkpoint dir in {ckpts})")


def write_pointer(ckpts: Path, name: str) -> None:
    """checkpoints/last.txt names the newest checkpoint for people and scripts; lookups never depend on it."""
    (ckpts / "last.txt.tmp").write_text(name)
    (ckpts / "last.txt.tmp").replace(ckpts / "last.txt")


def repair_checkpoints(ckpts: Path) -> list[str]:
    """Settle what a crash inside `commit_dir` left: for each step with a `.tmp`/`.old` copy, the first usable of
    (`<step>`, `<step>.tmp`, `<step>.old`) becomes `<step>` and the other copies are removed. A copy is removed
    only when it is damaged or another good copy of the same step stays. Only the process that writes this run's
    checkpoints may call it (a `.tmp` of a live writer would look stale). Returns what was done, one line each."""
    if not ckpts.is_dir():
        return []
    done = []
    stale = {p.name.split(".")[0] for _, p in step_dirs(ckpts, (".tmp", ".old"))}
    for stem in sorted(stale):
        real, copies = ckpts / stem, (ckpts / f"{stem}.tmp", ckpts / f"{stem}.old")
        best = next((p for p in (real, *copies) if p.exists() and check_dir(p).usable), None)
        if best is not None and best != real:
            if real.exists():  # damaged, and a complete copy of the same step replaces it
                shutil.rmtree(real)
            os.replace(best, real)
            done.append(f"restored {real} from {best.name}")
        for p in copies:
            if p.exists():
                shutil.rmtree(p)
                done.append(f"removed stale {p}")
    (ckpts / "last.txt.tmp").unlink(missing_ok=True)
    if done:
        newest = next((p for _, p in step_dirs(ckpts) if check_dir(p, deep=False).usable), None)
        if newest is not None:
            write_pointer(ckpts, newest.name)
    return done
