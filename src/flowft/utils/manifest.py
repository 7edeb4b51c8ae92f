"""Checkpoint integrity: a manifest.json with the size and sha256 of every file of a checkpoint dir, written last
(just before the atomic rename), and the checks that decide whether a checkpoint dir can be trusted.

A flipped byte, a truncated, emptied or deleted file, an edited JSON or buffer header all change a size or a digest,
so a damaged checkpoint is recognised before anything is loaded from it, and lookups fall back to an older one.
Checkpoints written before manifests existed (no manifest.json, config.json format_version < 2) still load: they
get the old completeness check and one warning that they are unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
CHECKPOINT_FORMAT = 2
"""config.json format_version of checkpoints that carry a manifest: a missing manifest.json is then damage."""
TRAINING_FILES = ("model.safetensors", "config.json", "training_state/optim.safetensors",
                  "training_state/optim.json", "training_state/rng.safetensors", "training_state/state.json",
                  "training_state/collector.safetensors")
BC_FILES = ("model.safetensors", "config.json")
OPTIONAL_FILES = ("buffer.safetensors",)
"""Files a checkpoint may hold; each one present must be listed in its manifest (videos/ etc. are not covered)."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped as damaged, or loaded without verification (written before manifests)."""


@dataclass(frozen=True)
class DirCheck:
    """What is known about one checkpoint dir. `problem` is one line naming the damaged file (None: usable)."""

    path: Path
    problem: str | None = None
    verified: bool = False  # True: every file matched the manifest; False with no problem: a legacy checkpoint

    @property
    def usable(self) -> bool:
        return self.problem is None


def _digest(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes the renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path) -> None:
    """Digest every file under `directory` into manifest.json, with every file and the dir flushed to disk first,
    so a manifest never describes data that a power cut could still lose."""
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            fsync_path(p)
            size, sha = _digest(p)
            files[p.relative_to(directory).as_posix()] = {"size": size, "sha256": sha}
    out = directory / MANIFEST
    out.write_text(json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1, sort_keys=True))
    fsync_path(out)
    for d in {directory, *((directory / f).parent for f in files)}:
        fsync_path(d)


def _step_of(path: Path) -> int | None:
    stem = path.name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _read_json(path: Path, what: str) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"{path}: unreadable {what} ({type(e).__name__}: {str(e)[:120]})"
    if not isinstance(data, dict):
        return None, f"{path}: {what} is not a JSON object"
    return data, None


def _is_training(directory: Path, listed: set[str]) -> bool:
    return (directory / "training_state").exists() or any(k.startswith("training_state/") for k in listed)


def _check_manifest(directory: Path, deep: bool) -> str | None:
    """None when every file listed matches its size (and sha256 when deep) and every checkpoint file is listed."""
    manifest, problem = _read_json(directory / MANIFEST, "manifest")
    if problem:
        return problem
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        return f"{directory / MANIFEST}: malformed manifest (no 'files' table)"
    for rel, entry in sorted(files.items()):
        f = directory / rel
        if not f.is_file():
            return f"{f}: missing (listed in {directory / MANIFEST})"
        if f.stat().st_size != entry.get("size"):
            return (f"{f}: {f.stat().st_size} bytes, {directory / MANIFEST} says {entry.get('size')} (truncated or "
                    "damaged)")
    required = TRAINING_FILES if _is_training(directory, set(files)) else BC_FILES
    for rel in (*required, *OPTIONAL_FILES):
        if rel not in files and (rel in required or (directory / rel).exists()):
            return f"{directory / rel}: not listed in {directory / MANIFEST} (damaged manifest)"
    if deep:
        for rel, entry in sorted(files.items()):
            if _digest(directory / rel)[1] != entry.get("sha256"):
                return f"{directory / rel}: sha256 differs from {directory / MANIFEST} (flipped or edited bytes)"
    return None


def _check_legacy(directory: Path) -> str | None:
    """A checkpoint without manifest: damaged unless it predates manifests and has every file, none empty."""
    config, problem = _read_json(directory / "config.json", "checkpoint config")
    if problem:
        return problem
    version = config.get("format_version", 0)
    if not isinstance(version, int) or version >= CHECKPOINT_FORMAT:
        return f"{directory / MANIFEST}: missing (this checkpoint was written with one)"
    for rel in TRAINING_FILES if _is_training(directory, set()) else BC_FILES:
        f = directory / rel
        if not f.is_file() or f.stat().st_size == 0:
            return f"{f}: {'empty' if f.is_file() else 'missing'} (incomplete checkpoint)"
    return None


def _check_state(directory: Path) -> str | None:
    """training_state/state.json must describe the step its dir is named after."""
    state_path = directory / "training_state" / "state.json"
    step = _step_of(directory)
    if step is None or not state_path.exists():
        return None
    state, problem = _read_json(state_path, "training state")
    if problem:
        return problem
    if state.get("env_steps") != step:
        return (f"{state_path}: env_steps {state.get('env_steps')} disagrees with its checkpoint dir "
                f"{directory.name} (inconsistent checkpoint)")
    return None


_warned_legacy: set[str] = set()


def check_dir(directory: str | Path, deep: bool = True) -> DirCheck:
    """Is `directory` a complete, undamaged checkpoint? deep: also compare every sha256 (reads every byte; about
    0.3 s per 100 MB); not deep: sizes, listing and state.json only (rotation, which keeps the fresh checkpoint)."""
    directory = Path(directory)
    if not directory.is_dir():
        return DirCheck(directory, f"{directory}: missing checkpoint dir")
    try:  # a dir deleted or renamed while it is read (a concurrent rotation) is simply not usable
        has_manifest = (directory / MANIFEST).exists()
        problem = _check_manifest(directory, deep) if has_manifest else _check_legacy(directory)
        result = DirCheck(directory, problem or _check_state(directory), verified=has_manifest)
    except OSError as e:
        return DirCheck(directory, f"{directory}: unreadable ({e})")
    if result.usable and not has_manifest and str(directory) not in _warned_legacy:
        _warned_legacy.add(str(directory))
        warnings.warn(f"checkpoint {directory} has no {MANIFEST} (written by an earlier flowft): loaded unverified",
                      CheckpointWarning, stacklevel=2)
    return result
