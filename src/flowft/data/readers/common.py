"""Checks every reader applies: the file is HDF5 and readable, actions lie in the task's box, JSON attributes parse,
and a warning when observation keys are joined in an order nobody stated."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from flowft.data.readers import DemoWarning
from flowft.errors import DataError, DataNotFoundError

ACTION_MARGIN = 1.0
"""Demo actions may exceed the task's action box by this fraction of its width ([-3, 3] for a [-1, 1] box: envs clip
small excursions, noisy or human demos have them, and there is no flag to override a false alarm); beyond it the demos
are in other units or unscaled (an action of 1e6), which BC would fit silently and the policy could never execute."""


def check_actions(a: np.ndarray, bounds: tuple[np.ndarray, np.ndarray] | None) -> str | None:
    """What is wrong with one episode's actions [T, Da] against the task's action box (None = fine). A dims mismatch
    is left to the caller's dims check, which names both sides."""
    if bounds is None:
        return None
    low, high = (np.asarray(b, np.float64).reshape(-1) for b in bounds)
    if a.shape[1] != len(low):
        return None
    width = np.where(np.isfinite(high - low), high - low, np.inf)
    bad = (a < low - ACTION_MARGIN * width) | (a > high + ACTION_MARGIN * width)
    if not bad.any():
        return None
    t, d = (int(i) for i in np.argwhere(bad)[0])
    return (f"action {a[t, d]:g} (step {t}, dim {d}) is far outside the task's action bounds [{low[d]:g}, "
            f"{high[d]:g}] ({int(bad.any(1).sum())} steps; more than {ACTION_MARGIN:g} x the range beyond a bound): "
            "demos in other units or unscaled?")


def check_file(path: Path, what: str = "demo file") -> None:
    """A path that exists but cannot be an HDF5 file fails here with what is wrong, never later as 'not found'."""
    if not path.exists():
        raise DataNotFoundError(f"{what} not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not an HDF5 {what}")
    if path.is_file() and not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file (no HDF5 signature); expected a robomimic-style or Minari {what}")


@contextmanager
def open_hdf5(path: Path, what: str = "demo file") -> Iterator[h5py.File]:
    """h5py.File read-only, with a damaged file (truncated, unreadable dataset) reported as one DataError naming it."""
    check_file(path, what)
    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as err:  # h5py's own errors name neither the file nor what to do
        raise DataError(f"{path}: unreadable HDF5 {what} ({err})") from None


def json_attr(node, key: str, where: str) -> dict:
    if key not in node.attrs:
        return {}
    try:
        return json.loads(node.attrs[key])
    except (json.JSONDecodeError, TypeError) as err:
        raise DataError(f"{where}: attribute '{key}' is not valid JSON ({err})") from None


def any_true(node) -> bool | None:
    """A success flag stored as an attribute value or a per-step dataset: true at any step (None: not numeric)."""
    arr = np.asarray(node[()] if isinstance(node, h5py.Dataset) else node)
    if arr.dtype.kind not in "biuf":
        return None
    return bool(arr.size and np.any(arr))


def find_flag(group: h5py.Group, keys: tuple[str, ...]) -> bool | None:
    """The first of `keys` the episode group stores: attribute, per-step dataset, or infos/<key> dataset."""
    for key in keys:
        if key in group.attrs:
            return any_true(group.attrs[key])
        for node in (group.get(key), group["infos"].get(key) if isinstance(group.get("infos"), h5py.Group) else None):
            if isinstance(node, h5py.Dataset):
                return any_true(node)
    return None


def warn_key_order(where, keys: list[str], how: str) -> None:
    """Several observation keys joined in an order that neither the user (--obs-keys) nor the file stated: the
    dims can match the env while the features sit in the wrong columns, so say which order was used."""
    if len(keys) > 1:
        warnings.warn(f"{where}: observation keys joined in {how} {keys}; if your env concatenates them in another "
                      "order, pass it with --obs-keys (docs/data.md)", DemoWarning, stacklevel=3)
