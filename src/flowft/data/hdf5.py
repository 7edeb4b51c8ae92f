"""robomimic-style HDF5 demonstrations: `data/demo_i/{obs/<key>, actions, rewards, dones}`.

The same reader serves the project's own files (written by `flowft demos`) and users' real robomimic files
(e.g. `low_dim_v15.hdf5`, whose obs keys are robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos, object).
Files are opened read-only with h5py; nothing is unpickled. Env metadata is a JSON string attribute.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch

from flowft.errors import DataError, DataNotFoundError


@dataclass
class DemoDataset:
    """Episodes flattened into arrays (the zarr / EpisodeStore model). T = total steps over all episodes."""

    obs: np.ndarray  # [T, Do]
    actions: np.ndarray  # [T, Da]
    rewards: np.ndarray  # [T]
    episode_ends: np.ndarray  # [E] exclusive end index of each episode
    episode_success: np.ndarray  # [E] bool
    env_meta: dict
    demo_meta: dict = field(default_factory=dict)
    """How the demos were made (`data.attrs["demo_style"]`: style, its parameters, expert success), if recorded."""

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    def sample_chunks(self, batch_size: int, chunk_len: int, rng: np.random.Generator):
        """Uniform chunk starts over all steps -> (obs [B, Do], actions [B, H, Da], valid [B, H]) tensors.
        Steps past the episode end are invalid and repeat the episode's last action (masked in the CFM loss)."""
        T = len(self.obs)
        start = rng.integers(0, T, size=batch_size)
        ep = np.searchsorted(self.episode_ends, start, side="right")
        end = self.episode_ends[ep]  # exclusive
        idx = start[:, None] + np.arange(chunk_len)  # [B, H]
        valid = idx < end[:, None]
        idx = np.minimum(idx, end[:, None] - 1)
        t = torch.from_numpy
        return t(self.obs[start]), t(self.actions[idx]), t(valid.astype(np.float32))


class EpisodeCollector:
    """Accumulates validated episodes for the dataset readers (success filter, episode cap, concatenation)."""

    def __init__(self, only_success: bool, max_episodes: int | None):
        self.only_success, self.max_episodes = only_success, max_episodes
        self.obs: list[np.ndarray] = []
        self.acts: list[np.ndarray] = []
        self.rews: list[np.ndarray] = []
        self.succ: list[bool] = []

    def add(self, o: np.ndarray, a: np.ndarray, r: np.ndarray, ok: bool) -> bool:
        """Keep the episode unless filtered; returns True once the cap is reached."""
        if not (self.only_success and not ok):
            self.obs.append(o); self.acts.append(a); self.rews.append(r); self.succ.append(ok)  # noqa: E702
        return self.max_episodes is not None and len(self.obs) >= self.max_episodes

    def build(self, where, env_meta: dict) -> DemoDataset:
        if not self.obs:
            raise DataError(f"{where}: no {'successful ' if self.only_success else ''}episodes to read")
        return DemoDataset(np.concatenate(self.obs), np.concatenate(self.acts), np.concatenate(self.rews),
                           np.cumsum([len(a) for a in self.acts]), np.array(self.succ, dtype=bool), env_meta)


def write_demos(path: str | os.PathLike, episodes: list[dict], env_meta: dict) -> None:
    """Write episodes ({"obs": {key: [T, k]}, "actions": [T, Da], "rewards": [T], "dones": [T], "success": bool})
    atomically (temp file + rename), so an interrupted run never leaves a half-written dataset at `path`.
    Optional episode keys (robosuite experts): "style" (the generator's style and parameters, the same for every
    episode: written once as data.attrs["demo_style"] with the expert success rate) and "perturbation" (that
    episode's draws: data/demo_i.attrs["perturbation"]), both as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    total = 0
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i, ep in enumerate(episodes):
            g = data.create_group(f"demo_{i}")
            for key, arr in ep["obs"].items():
                g.create_dataset(f"obs/{key}", data=np.asarray(arr, np.float32))
            g.create_dataset("actions", data=np.asarray(ep["actions"], np.float32))
            g.create_dataset("rewards", data=np.asarray(ep["rewards"], np.float32))
            g.create_dataset("dones", data=np.asarray(ep["dones"], np.int64))
            g.attrs["num_samples"] = len(ep["actions"])
            g.attrs["success"] = bool(ep["success"])
            if "perturbation" in ep:
                g.attrs["perturbation"] = json.dumps(ep["perturbation"])
            total += len(ep["actions"])
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_meta)
        if episodes and "style" in episodes[0]:
            rate = sum(bool(e["success"]) for e in episodes) / len(episodes)
            data.attrs["demo_style"] = json.dumps({**episodes[0]["style"], "episodes": len(episodes),
                                                   "expert_success": rate})
    os.replace(tmp, path)


def _demo_order(names) -> list[str]:
    return sorted(names, key=lambda s: (len(s), s))  # demo_2 before demo_10


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


def _numeric(g, key: str, where: str) -> np.ndarray:
    if not isinstance(g[key], h5py.Dataset) or g[key].dtype.kind not in "biuf":
        raise DataError(f"{where}/{key} is not a numeric array")
    return np.asarray(g[key][()])


def _read_demo(path: Path, name: str, g, keys: list[str], bounds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One robomimic demo group -> (obs [T, Do], actions [T, Da], rewards [T]); every problem names the file and
    the demo."""
    where = f"{path}: data/{name}"
    if not isinstance(g, h5py.Group):
        raise DataError(f"{where} is not a group (expected data/demo_i/{{obs/<key>, actions, rewards}})")
    for req in ("actions", "obs"):
        if req not in g:
            raise DataError(f"{where} is missing key '{req}'")
    if not isinstance(g["obs"], h5py.Group):
        raise DataError(f"{where}/obs is not a group of observation keys")
    missing = [k for k in keys if k not in g["obs"]]
    if missing:
        raise DataError(f"{where}/obs is missing key(s) {missing}; present: {sorted(g['obs'].keys())}")
    a = _numeric(g, "actions", where).astype(np.float32)
    if a.ndim != 2:
        raise DataError(f"{where}/actions must be 2-D [steps, act_dim], got shape {a.shape}")
    if len(a) == 0:
        raise DataError(f"{where} is an empty episode (0 steps)")
    parts = []
    for k in keys:
        o = _numeric(g["obs"], k, f"{where}/obs")
        if o.ndim == 0 or len(o) != len(a):
            raise DataError(f"{where}/obs/{k} has {len(o) if o.ndim else 0} rows, 'actions' has {len(a)} "
                            "(one observation per action)")
        parts.append(o.reshape(len(a), -1).astype(np.float32))
    r = _numeric(g, "rewards", where).astype(np.float32).reshape(-1) if "rewards" in g else np.zeros(len(a), np.float32)
    if len(r) != len(a):
        raise DataError(f"{where}/rewards has {len(r)} entries, 'actions' has {len(a)}")
    o = np.concatenate(parts, 1)
    for key, arr in (("obs", o), ("actions", a), ("rewards", r)):
        if not np.isfinite(arr).all():
            step = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))[0][0])
            raise DataError(f"{where}/{key} contains NaN or inf (first at step {step})")
    problem = check_actions(a, bounds)
    if problem:
        raise DataError(f"{where}/actions: {problem}")
    return o, a, r


def read_demos(path: str | os.PathLike, obs_keys: list[str] | None = None, only_success: bool = False,
               max_episodes: int | None = None, action_bounds: tuple[np.ndarray, np.ndarray] | None = None
               ) -> DemoDataset:
    """Read a robomimic-style file. obs_keys default: env_args["obs_keys"] if present, else all keys sorted.
    `action_bounds` (low, high): the task's action box; demos far outside it are refused (check_actions)."""
    path = Path(path)
    with open_hdf5(path) as f:
        if "data" not in f:
            raise DataError(f"{path}: missing group 'data' (expected robomimic layout data/demo_i/...); "
                            f"top-level keys: {sorted(f.keys())[:10]}")
        data = f["data"]
        meta, demo_meta = json_attr(data, "env_args", f"{path}: data"), json_attr(data, "demo_style", f"{path}: data")
        names = _demo_order(data.keys())
        if not names:
            raise DataError(f"{path}: group 'data' holds no demos")
        first = data[names[0]]
        if not obs_keys and not meta.get("obs_keys"):  # the first demo's keys: check it can provide them
            if not isinstance(first, h5py.Group) or not isinstance(first.get("obs"), h5py.Group):
                raise DataError(f"{path}: data/{names[0]} has no 'obs' group")
        keys = obs_keys or meta.get("obs_keys") or sorted(first["obs"].keys())
        eps = EpisodeCollector(only_success, max_episodes)
        dims: tuple[int, int] | None = None
        for name in names:
            g = data[name]
            o, a, r = _read_demo(path, name, g, keys, action_bounds)
            ok = bool(g.attrs["success"]) if "success" in g.attrs else bool(r.max() >= 0 if len(r) else False)
            dims = dims or (o.shape[1], a.shape[1])
            if (o.shape[1], a.shape[1]) != dims:
                raise DataError(f"{path}: data/{name} has obs/action dims {o.shape[1]}/{a.shape[1]}, "
                                f"earlier demos have {dims[0]}/{dims[1]}")
            if eps.add(o, a, r, ok):
                break
    ds = eps.build(path, {**meta, "obs_keys": list(keys)})
    ds.demo_meta = demo_meta
    return ds


def load_demos(path: str, fmt: str = "auto", **kw) -> DemoDataset:
    """Demonstrations from a robomimic-style HDF5 file (ours or robomimic's) or a Minari dataset on disk
    (directory, main_data.hdf5 or dataset id under $MINARI_DATASETS_PATH). `auto` picks by the file's layout; a file
    that exists but is empty, not HDF5 or in neither layout is reported as such, never as a missing dataset."""
    p = Path(path)
    if fmt == "auto" and p.is_file():
        with open_hdf5(p) as f:
            top = list(f.keys())
        if "data" in top:
            fmt = "robomimic"
        elif any(k.startswith("episode_") for k in top):
            fmt = "minari"
        else:
            raise DataError(f"{p}: neither a robomimic-style file (group 'data') nor a Minari dataset "
                            f"('episode_<i>' groups); top-level keys: {sorted(top)[:10]}")
    if fmt == "robomimic" or (fmt == "auto" and p.suffix in (".hdf5", ".h5") and not p.exists()):
        return read_demos(path, **kw)  # a missing .hdf5 path is a missing demo file, not a Minari id
    from flowft.data.minari_reader import read_minari

    return read_minari(path, **kw)
