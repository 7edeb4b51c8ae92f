"""Checkpoint I/O: safetensors weights, optimiser states as safetensors + JSON, atomic directory writes.

Layout of one checkpoint directory (conventions.md §B.3):
    model.safetensors            flat keys "<module>.<param>" (actor, actor_target, critic, critic_target, ...)
    config.json                  resolved run config + algo name + env dims + flowft version
    training_state/optim.safetensors, optim.json, rng.safetensors, state.json
    buffer.safetensors           replay buffer (optional)
No file is ever unpickled.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from flowft.utils.config_io import read_json, write_json


def save_modules(path: str | Path, modules: dict[str, nn.Module]) -> None:
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    save_file(tensors, str(path))


def load_modules(path: str | Path, modules: dict[str, nn.Module], strict: bool = True) -> None:
    """Load flat "<module>.<key>" tensors; shape mismatches give one message naming the tensor."""
    tensors = load_file(str(path))
    for name, m in modules.items():
        prefix = f"{name}."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        own = m.state_dict()
        if strict:
            missing = sorted(set(own) - set(sd))
            if missing:
                raise ValueError(f"checkpoint {path}: module '{name}' is missing tensors {missing[:5]}")
        for k, v in sd.items():
            if k in own and own[k].shape != v.shape:
                raise ValueError(f"checkpoint {path}: '{name}.{k}' has shape {tuple(v.shape)}, this model expects "
                                 f"{tuple(own[k].shape)} (checkpoint from another config?)")
        m.load_state_dict(sd, strict=strict)


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
    tensors = load_file(str(directory / "optim.safetensors"))
    meta = read_json(directory / "optim.json")
    for name, opt in optims.items():
        if name not in meta:
            raise ValueError(f"{directory}: no optimiser state for '{name}'")
        state: dict = {}
        for key, v in tensors.items():
            oname, pid, k = key.split("/", 2)
            if oname == name:
                state.setdefault(int(pid), {})[k] = v
        for key, v in meta[name]["scalars"].items():
            pid, k = key.split("/", 1)
            state.setdefault(int(pid), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})


def atomic_dir(final: Path) -> Path:
    """Return a temp sibling directory to fill; `commit_dir` renames it into place."""
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint of a run (via checkpoints/last.txt)."""
    ckpts = Path(run_dir) / "checkpoints"
    pointer = ckpts / "last.txt"
    if not pointer.exists():
        raise FileNotFoundError(f"{run_dir}: no checkpoint yet (missing {pointer})")
    path = ckpts / pointer.read_text().strip()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path}: incomplete checkpoint (no model.safetensors)")
    return path
