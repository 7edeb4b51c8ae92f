"""robomimic-style HDF5 demonstrations: `data/demo_i/{obs/<key>, actions, rewards, dones}` (docs/data.md).

The same reader serves the project's own files (written by `flowft demos`, `write_demos` below) and users' real
robomimic files (e.g. `low_dim_v15.hdf5`, whose obs keys are robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos,
object). Files are opened read-only with h5py; nothing is unpickled. Env metadata is a JSON string attribute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from flowft.data.dataset import DemoDataset, EpisodeCollector
from flowft.data.readers import Evidence, ReadOptions, describe_rule, episode_success, warn_undecided
from flowft.data.readers.common import check_actions, find_flag, json_attr, open_hdf5, warn_key_order
from flowft.errors import DataError


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


def _evidence(g: h5py.Group, r: np.ndarray, opts: ReadOptions) -> Evidence:
    dones = g.get("dones")
    terminal = None
    if isinstance(dones, h5py.Dataset) and dones.dtype.kind in "biuf" and dones.size:
        terminal = bool(np.asarray(dones[()]).reshape(-1)[-1])
    return Evidence(r, flag=find_flag(g, opts.flag_keys), terminal=terminal)


def _obs_keys(path: Path, data, names: list[str], meta: dict, opts: ReadOptions) -> list[str]:
    """--obs-keys, else the file's env_args["obs_keys"], else the first demo's keys sorted (with a warning)."""
    if opts.obs_keys:
        return list(opts.obs_keys)
    if meta.get("obs_keys"):
        return list(meta["obs_keys"])
    first = data[names[0]]
    if not isinstance(first, h5py.Group) or not isinstance(first.get("obs"), h5py.Group):
        raise DataError(f"{path}: data/{names[0]} has no 'obs' group")
    keys = sorted(first["obs"].keys())
    warn_key_order(path, keys, "sorted order (no --obs-keys and no env_args['obs_keys'] in the file)")
    return keys


def read_demos(path: str | os.PathLike, opts: ReadOptions | None = None, **kw) -> DemoDataset:
    """Read a robomimic-style file; `opts` (or its fields as keywords: obs_keys, only_success, max_episodes,
    action_bounds, success_key, success_rule, success_reward) say how. Obs keys: opts.obs_keys, else
    env_args["obs_keys"], else all keys sorted (warned). Success: flowft.data.readers (the success rules)."""
    opts = opts or ReadOptions(**{**kw, "obs_keys": tuple(kw.get("obs_keys") or ())})
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
        keys = _obs_keys(path, data, names, meta, opts)
        eps = EpisodeCollector(opts.only_success, opts.max_episodes)
        dims: tuple[int, int] | None = None
        undecided = 0
        for name in names:
            g = data[name]
            o, a, r = _read_demo(path, name, g, keys, opts.action_bounds)
            ok, decided = episode_success(_evidence(g, r, opts), opts, f"{path}: data/{name}")
            undecided += not decided
            dims = dims or (o.shape[1], a.shape[1])
            if (o.shape[1], a.shape[1]) != dims:
                raise DataError(f"{path}: data/{name} has obs/action dims {o.shape[1]}/{a.shape[1]}, "
                                f"earlier demos have {dims[0]}/{dims[1]}")
            if eps.add(o, a, r, ok):
                break
    rule = describe_rule(opts, "robomimic")
    warn_undecided(path, undecided, eps.seen)
    ds = eps.build(path, {**meta, "obs_keys": list(keys), "success_rule": rule})
    ds.demo_meta = demo_meta
    return ds


class RobomimicReader:
    """The DemoReader of robomimic-style files (top-level group `data`)."""

    name = "robomimic"

    def detect(self, top_level_keys: list[str]) -> bool:
        return "data" in top_level_keys

    def read(self, path, opts: ReadOptions) -> DemoDataset:
        return read_demos(path, opts)


READER = RobomimicReader()
