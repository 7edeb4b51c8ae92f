"""robomimic-style HDF5 demonstrations: `data/demo_i/{obs/<key>, actions, rewards, dones}`.

The same reader serves the project's own files (written by `flowft demos`) and users' real robomimic files
(e.g. `low_dim_v15.hdf5`, whose obs keys are robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos, object).
Files are opened read-only with h5py; nothing is unpickled. Env metadata is a JSON string attribute.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch


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
            raise ValueError(f"{where}: no {'successful ' if self.only_success else ''}episodes to read")
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


def read_demos(path: str | os.PathLike, obs_keys: list[str] | None = None, only_success: bool = False,
               max_episodes: int | None = None) -> DemoDataset:
    """Read a robomimic-style file. obs_keys default: env_args["obs_keys"] if present, else all keys sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"demo file not found: {path}")
    with h5py.File(path, "r") as f:
        if "data" not in f:
            raise ValueError(f"{path}: missing group 'data' (expected robomimic layout data/demo_i/...)")
        data = f["data"]
        meta = json.loads(data.attrs["env_args"]) if "env_args" in data.attrs else {}
        demo_meta = json.loads(data.attrs["demo_style"]) if "demo_style" in data.attrs else {}
        names = _demo_order(data.keys())
        if not names:
            raise ValueError(f"{path}: group 'data' holds no demos")
        keys = obs_keys or meta.get("obs_keys") or sorted(data[names[0]]["obs"].keys())
        eps = EpisodeCollector(only_success, max_episodes)
        dims: tuple[int, int] | None = None
        for name in names:
            g = data[name]
            for req in ("actions", "obs"):
                if req not in g:
                    raise ValueError(f"{path}: data/{name} is missing key '{req}'")
            missing = [k for k in keys if k not in g["obs"]]
            if missing:
                raise ValueError(f"{path}: data/{name}/obs is missing key(s) {missing}; present: {sorted(g['obs'].keys())}")
            o = np.concatenate([np.asarray(g["obs"][k], np.float32).reshape(len(g["actions"]), -1) for k in keys], 1)
            a = np.asarray(g["actions"], np.float32)
            r = np.asarray(g["rewards"], np.float32) if "rewards" in g else np.zeros(len(a), np.float32)
            ok = bool(g.attrs["success"]) if "success" in g.attrs else bool(r.max() >= 0 if len(r) else False)
            for key, arr in (("obs", o), ("actions", a), ("rewards", r)):
                if not np.isfinite(arr).all():
                    raise ValueError(f"{path}: data/{name}/{key} contains NaN or inf")
            dims = dims or (o.shape[1], a.shape[1])
            if (o.shape[1], a.shape[1]) != dims:
                raise ValueError(f"{path}: data/{name} has obs/action dims {o.shape[1]}/{a.shape[1]}, "
                                 f"earlier demos have {dims[0]}/{dims[1]}")
            if eps.add(o, a, r, ok):
                break
    ds = eps.build(path, {**meta, "obs_keys": list(keys)})
    ds.demo_meta = demo_meta
    return ds


def load_demos(path: str, fmt: str = "auto", **kw) -> DemoDataset:
    """Demonstrations from a robomimic-style HDF5 file (ours or robomimic's) or a Minari dataset on disk
    (directory, main_data.hdf5 or dataset id under $MINARI_DATASETS_PATH). `auto` picks by the file's layout."""
    if fmt == "auto":
        p = Path(path)
        is_robomimic = False
        if p.is_file() and h5py.is_hdf5(p):
            with h5py.File(p, "r") as f:
                is_robomimic = "data" in f
        fmt = "robomimic" if is_robomimic else "minari"
    if fmt == "robomimic":
        return read_demos(path, **kw)
    from flowft.data.minari_reader import read_minari

    return read_minari(path, **kw)
