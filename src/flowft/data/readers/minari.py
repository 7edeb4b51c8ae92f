"""Read Minari datasets that are already on disk into a :class:`~flowft.data.dataset.DemoDataset`.

No download, no network, and no ``minari`` package needed: the files are read with h5py (read-only)
and ``json``; nothing is unpickled.

Where the dataset is
    ``read_minari(x)`` accepts a dataset directory (holding ``data/main_data.hdf5`` and, optionally,
    ``data/metadata.json``, as Minari writes them), that ``data`` directory itself, or the
    ``main_data.hdf5`` file. Otherwise ``x`` is a Minari dataset id such as
    ``D4RL/kitchen/complete-v2``, resolved like Minari does to ``$MINARI_DATASETS_PATH/<id>`` or,
    when that variable is unset, ``~/.minari/datasets/<id>``.

Layout (Minari HDF5 storage)
    one group ``episode_<i>`` per episode (read in increasing ``i``), holding ``observations``,
    ``actions``, ``rewards``, ``terminations``, ``truncations`` (and optional ``infos``).
    ``observations`` has one more row than ``actions`` (it includes the final observation); the
    last row is dropped so ``obs[t]`` is the observation before ``actions[t]``.

Flattening of dict/tuple observations (deterministic)
    ``observations`` may be a group (Dict / Tuple observation space, possibly nested). Each leaf
    array of shape ``[T+1, ...]`` is reshaped to ``[T+1, prod(...)]`` and the leaves are
    concatenated in this order:

    * top level: ``observation``, ``desired_goal``, ``achieved_goal`` (those present, in that order),
      then every other key sorted by name -- or exactly the keys in ``obs_keys`` when given;
    * below the top level: sub-keys sorted by name (Tuple entries ``_index_<i>`` by ``i``), depth first.

    For Minari Kitchen this gives the OGPO convention
    ``concat(observation, desired_goal/<task> for sorted tasks, achieved_goal/<task> for sorted tasks)``.
    ``obs_keys`` entries may also be slash paths (``"desired_goal/kettle"``). The resulting layout is
    recorded in ``env_meta["obs_layout"]`` (``"path[dim]"`` strings, as in ``flowft.envs.kitchen``)
    and ``env_meta["obs_slices"]`` (``{path: [start, end]}``). A plain Box observation is the single
    key ``"observations"``. Actions are flattened the same way (sorted keys) if stored as a group.

Success of an episode (``episode_success``): ``--success-rule`` (flowft.data.readers) picks the rule; the
default ``auto`` counts an episode successful when any of these holds:

    1. ``terminations[-1]`` is true -- the env reached a terminal state. For task envs (Kitchen
       terminates once all tasks are done; goal-reaching mazes with ``continuing_task=False``) this
       means success. Caveat: in locomotion datasets (Hopper, Walker, Ant) termination means the
       robot fell, so success flags / ``only_success`` are meaningless there.
    2. the episode stores a per-step ``infos/success`` or ``infos/is_success`` array (old Minari group
       layout, e.g. Adroit, PointMaze, AntMaze; gymnasium-robotics envs such as Fetch use ``is_success``;
       ``--success-key`` names another) and it is true at some step;
    3. sparse positive rewards: every reward of the episode is a non-negative integer
       (0/1 goal rewards, or Kitchen's task counts) and ``max(rewards) >= K``, where ``K`` is the
       number of tasks (sub-keys of ``observations/desired_goal``) when that group exists, else 1.
       This matches D4RL's conventions: AntMaze/PointMaze-sparse count an episode successful when
       the goal reward was obtained (return > 0); D4RL Kitchen's reward counts the tasks completed
       so far, so reaching the task count means all tasks are done. (With Gymnasium-Robotics'
       per-step completion rewards, the Kitchen success step also terminates, covered by rule 1.)

    Dense or negative rewards never imply success by themselves (such episodes count as failures, with a
    warning); choose ``--success-rule reward --success-reward 0`` for the -1/0 sparse reward. The rule is
    written to ``env_meta["success_rule"]``.

Errors: a malformed file raises one ``DataError`` (a ``ValueError``) naming the file, the episode and
the key (missing dataset, NaN/inf, observations not one row longer than actions, 1-D or empty actions,
length or dimension mismatches across keys or episodes, non-numeric leaves, actions far outside the
task's bounds); an empty, non-HDF5 or unreadable file says so. A dataset that does not exist raises
``DataNotFoundError`` (also a ``FileNotFoundError``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np

from flowft.data.dataset import DemoDataset, EpisodeCollector
from flowft.data.readers import Evidence, ReadOptions, describe_rule, episode_success, warn_undecided
from flowft.data.readers.common import check_actions, find_flag, open_hdf5, warn_key_order
from flowft.errors import DataError, DataNotFoundError

__all__ = ["read_minari", "resolve_minari_path", "READER"]

_MAIN_FILE = "main_data.hdf5"
_META_FILE = "metadata.json"
_GOAL_ORDER = ("observation", "desired_goal", "achieved_goal")
_EP_RE = re.compile(r"^episode_(\d+)$")
_IDX_RE = re.compile(r"^_index_(\d+)$")


def _datasets_root() -> Path:
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def resolve_minari_path(path_or_id: str | os.PathLike) -> Path:
    """Path of ``main_data.hdf5`` for a dataset directory, its ``data`` dir, the file itself, or a
    dataset id under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``). Never downloads."""
    p = Path(os.fspath(path_or_id)).expanduser()
    if p.is_file():  # any file given explicitly is read as the data file (a wrong one fails on its content)
        return p
    tried = []
    for cand in (p,) if p.is_absolute() or p.exists() else (p, _datasets_root() / p):
        for f in (cand / "data" / _MAIN_FILE, cand / _MAIN_FILE, cand):
            tried.append(str(f))
            if f.is_file() and f.name == _MAIN_FILE:
                return f
    raise DataNotFoundError(
        f"Minari dataset {str(path_or_id)!r} not found on disk (looked for {', '.join(dict.fromkeys(tried))}). "
        "read_minari never downloads: fetch it first (e.g. `minari download <id>`) or set MINARI_DATASETS_PATH.")


def _sort_key(name: str):
    m = _IDX_RE.match(name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


def _top_order(keys) -> list[str]:
    keys = list(keys)
    first = [k for k in _GOAL_ORDER if k in keys]
    return first + sorted((k for k in keys if k not in first), key=_sort_key)


def _leaves(node, path: str) -> list[tuple[str, h5py.Dataset]]:
    """Depth-first leaves of a group (sub-keys sorted), or [(path, node)] for a dataset."""
    if isinstance(node, h5py.Dataset):
        return [(path, node)]
    out = []
    for k in sorted(node.keys(), key=_sort_key):
        out += _leaves(node[k], f"{path}/{k}" if path else k)
    return out


class _Bad(ValueError):
    """A problem inside one episode; read_minari re-raises it as a DataError naming the file and the episode."""


def _as_2d(ds: h5py.Dataset, what: str) -> np.ndarray:
    if ds.dtype.kind not in "biuf":
        raise _Bad(f"'{what}' has non-numeric dtype {ds.dtype}")
    arr = np.asarray(ds[()])
    if arr.ndim == 0:
        raise _Bad(f"'{what}' is a scalar, expected one row per step")
    return arr.reshape(len(arr), int(np.prod(arr.shape[1:])))  # not -1: an empty episode has 0 rows


def _flat_obs(g: h5py.Group, obs_keys) -> tuple[np.ndarray, list[tuple[str, int]]]:
    node = g["observations"]
    if isinstance(node, h5py.Dataset):
        if obs_keys:
            raise _Bad(f"obs_keys={list(obs_keys)} given but 'observations' is a plain array, not a dict")
        leaves = [("observations", node)]
    else:
        keys = list(obs_keys) if obs_keys else _top_order(node.keys())
        leaves = []
        for k in keys:
            if k not in node:
                raise _Bad(f"'observations' is missing key '{k}'; present: {_top_order(node.keys())}")
            leaves += _leaves(node[k], k)
        if not leaves:
            raise _Bad("'observations' holds no arrays")
    arrs, layout = [], []
    for path, ds in leaves:
        what = "observations" if path == "observations" else f"observations/{path}"
        a = _as_2d(ds, what)
        if arrs and len(a) != len(arrs[0]):
            raise _Bad(f"'{what}' has {len(a)} rows, '{layout[0][0]}' has {len(arrs[0])}")
        arrs.append(a.astype(np.float32))
        layout.append((path, a.shape[1]))
    return np.concatenate(arrs, 1), layout


def _flat_actions(g: h5py.Group) -> np.ndarray:
    node = g["actions"]
    if isinstance(node, h5py.Dataset) and node.ndim != 2:  # [T] would silently become a 1-dim action space
        raise _Bad(f"'actions' must be 2-D [steps, act_dim], got shape {node.shape}")
    leaves = _leaves(node, "actions") if isinstance(node, h5py.Group) else [("actions", node)]
    if not leaves:
        raise _Bad("'actions' holds no arrays")
    arrs = [_as_2d(ds, p) for p, ds in leaves]
    if len({len(a) for a in arrs}) > 1:
        raise _Bad(f"'actions' leaves have different lengths {[len(a) for a in arrs]}")
    return np.concatenate(arrs, 1).astype(np.float32)


def _num_tasks(g: h5py.Group) -> int:
    node = g["observations"]
    if isinstance(node, h5py.Group) and "desired_goal" in node and isinstance(node["desired_goal"], h5py.Group):
        return max(1, len(node["desired_goal"].keys()))
    return 1


def _evidence(g: h5py.Group, r: np.ndarray, term: np.ndarray, opts: ReadOptions) -> Evidence:
    return Evidence(r, flag=find_flag(g, opts.flag_keys), terminal=bool(term[-1]) if len(term) else None,
                    num_tasks=_num_tasks(g), terminal_in_auto=True)


def _read_episode(g: h5py.Group, opts: ReadOptions, where: str):
    for req in ("observations", "actions", "rewards", "terminations"):
        if req not in g:
            raise _Bad(f"missing key '{req}'; present: {sorted(g.keys())}")
    a = _flat_actions(g)
    o, layout = _flat_obs(g, opts.obs_keys)
    if len(a) == 0:
        raise _Bad("'actions' is empty (episode with no steps)")
    if len(o) != len(a) + 1:
        raise _Bad(f"'observations' has {len(o)} rows, expected len(actions)+1 = {len(a) + 1} "
                   "(Minari stores the final observation too)")
    r = np.asarray(g["rewards"][()], np.float64).reshape(-1)
    term = np.asarray(g["terminations"][()]).reshape(-1).astype(bool)
    for key, arr in (("rewards", r), ("terminations", term)):
        if len(arr) != len(a):
            raise _Bad(f"'{key}' has {len(arr)} entries, 'actions' has {len(a)}")
    if "truncations" in g and np.asarray(g["truncations"][()]).reshape(-1).shape[0] != len(a):
        raise _Bad(f"'truncations' has {np.asarray(g['truncations'][()]).size} entries, 'actions' has {len(a)}")
    o = o[:-1]
    for key, arr in (("observations", o), ("actions", a), ("rewards", r)):
        if not np.isfinite(arr).all():
            step, col = np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))[0]
            if key == "observations" and layout != [("observations", o.shape[1])]:
                ends = np.cumsum([d for _, d in layout])
                key = f"observations/{layout[int(np.searchsorted(ends, col, side='right'))][0]}"
            raise _Bad(f"'{key}' contains NaN or inf (first at step {step})")
    ok, decided = episode_success(_evidence(g, r, term, opts), opts, where)
    return o, a, r.astype(np.float32), ok, decided, layout


def _metadata(file: Path) -> dict:
    meta_file = file.parent / _META_FILE
    try:
        return json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_file}: not valid JSON ({e})") from None


def _env_meta(file: Path, minari_meta: dict, layout0, a_dim0: int, rule: str) -> dict:
    slices, start = {}, 0
    for path, d in layout0:
        slices[path] = [start, start + d]
        start += d
    return {"source": "minari", "path": str(file), "dataset_id": minari_meta.get("dataset_id"),
            "env_spec": minari_meta.get("env_spec"), "obs_keys": [p for p, _ in layout0],
            "obs_layout": [f"{p}[{d}]" for p, d in layout0], "obs_slices": slices, "obs_dim": start,
            "action_dim": int(a_dim0), "success_rule": rule, "minari_metadata": minari_meta}


def read_minari(path_or_id: str, opts: ReadOptions | None = None, **kw) -> DemoDataset:
    """Read an on-disk Minari dataset (directory or id) into a DemoDataset; see the module docstring for path
    resolution, observation flattening order and the success rule. `opts` (or its fields as keywords: obs_keys,
    only_success, max_episodes, action_bounds, success_key, success_rule, success_reward) say how; episodes far
    outside `action_bounds` are refused (readers.common.check_actions)."""
    opts = opts or ReadOptions(**{**kw, "obs_keys": tuple(kw.get("obs_keys") or ())})
    file = resolve_minari_path(path_or_id)
    minari_meta = _metadata(file)
    eps = EpisodeCollector(opts.only_success, opts.max_episodes)
    layout0, a_dim0, undecided = None, 0, 0
    with open_hdf5(file, "Minari dataset file") as f:
        names = [(int(m.group(1)), k) for k in f.keys() if (m := _EP_RE.match(k))]
        if not names:
            raise DataError(f"{file}: no 'episode_<i>' groups (not a Minari HDF5 dataset?); "
                            f"top-level keys: {sorted(f.keys())[:10]}")
        for _, name in sorted(names):
            g = f[name]
            if not isinstance(g, h5py.Group):
                raise DataError(f"{file}: '{name}' is not a group")
            try:
                o, a, r, ok, decided, layout = _read_episode(g, opts, f"{file}: {name}")
                problem = check_actions(a, opts.action_bounds)
                if problem:
                    raise _Bad(f"'actions': {problem}")
            except _Bad as e:
                raise DataError(f"{file}: {name}: {e}") from None
            undecided += not decided
            if layout0 is None:
                layout0, a_dim0 = layout, a.shape[1]
            elif layout != layout0 or a.shape[1] != a_dim0:
                raise DataError(f"{file}: {name}: inconsistent dims: obs layout {layout} / action dim {a.shape[1]}, "
                                f"earlier episodes have {layout0} / {a_dim0}")
            if eps.add(o, a, r, ok):
                break
    rule = describe_rule(opts, "minari")
    if not eps.obs:
        return eps.build(file, {"success_rule": rule})  # raises the "no episodes" error
    paths = [p for p, _ in layout0]
    if not opts.obs_keys and not all(_IDX_RE.match(p.split("/")[0]) for p in paths):
        warn_key_order(file, paths, "flowft's Minari order (observation, desired_goal, achieved_goal, other keys "
                       "sorted; gymnasium's FlattenObservation sorts all keys)")
    warn_undecided(file, undecided, eps.seen)
    return eps.build(file, _env_meta(file, minari_meta, layout0, a_dim0, rule))


class MinariReader:
    """The DemoReader of Minari datasets (top-level groups `episode_<i>`)."""

    name = "minari"

    def detect(self, top_level_keys: list[str]) -> bool:
        return any(_EP_RE.match(k) for k in top_level_keys)

    def read(self, path, opts: ReadOptions) -> DemoDataset:
        return read_minari(path, opts)


READER = MinariReader()
