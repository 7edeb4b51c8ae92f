"""A demonstration file that exists but is malformed gets one DataError line naming the file (and the episode) and
what is wrong: never a missing Minari dataset, a reshape error or an IndexError (issue 19, failure 9)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from flowft.algos.bc import pretrain
from flowft.data.load import load_demos
from flowft.data.readers.hdf5 import read_demos, write_demos
from flowft.data.readers.minari import read_minari
from flowft.errors import DataError, DataNotFoundError
from flowft.presets import bc_preset
from flowft.registry import get_task


def episode(T: int = 12, seed: int = 0, obs_dim: int = 6, act_dim: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": {"obs": rng.normal(size=(T, obs_dim))}, "actions": rng.uniform(-1, 1, (T, act_dim)),
            "rewards": -np.ones(T), "dones": np.eye(T)[-1], "success": True}


def demo_file(tmp_path, name: str = "d.hdf5", episodes=None):
    path = tmp_path / name
    write_demos(path, episodes if episodes is not None else [episode(seed=i) for i in range(3)], {"obs_keys": ["obs"]})
    return path


def replace_dataset(path, key: str, value) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = value


def refused(fn, *patterns: str) -> str:
    with pytest.raises(DataError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg and "not found" not in msg, msg
    for p in patterns:
        assert p in msg, msg
    return msg


# ------------------------------------------------------------------------------------ files that are not demos
def test_hdf5_file_without_data_group(tmp_path):
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    refused(lambda: load_demos(str(path)), str(path), "neither a robomimic-style file (group 'data') nor a Minari",
            "['weights']")
    refused(lambda: read_demos(path), str(path), "missing group 'data'")


@pytest.mark.parametrize("fmt", ["auto", "robomimic", "minari"])
def test_zero_byte_file(tmp_path, fmt):
    path = tmp_path / "empty.hdf5"
    path.write_bytes(b"")
    refused(lambda: load_demos(str(path), fmt), f"{path}: empty file (0 bytes)")


@pytest.mark.parametrize("fmt", ["auto", "robomimic", "minari"])
def test_file_that_is_not_hdf5(tmp_path, fmt):
    path = tmp_path / "demos.hdf5"
    path.write_text("obs,action\n1,2\n")
    refused(lambda: load_demos(str(path), fmt), f"{path}: not an HDF5 file")


def test_truncated_hdf5_file(tmp_path):
    path = demo_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    refused(lambda: load_demos(str(path)), str(path), "HDF5")


def test_missing_file_is_a_not_found_data_error(tmp_path):
    path = tmp_path / "nope.hdf5"
    for fmt in ("auto", "robomimic"):
        with pytest.raises(DataNotFoundError, match="demo file not found") as err:
            load_demos(str(path), fmt)
        assert isinstance(err.value, FileNotFoundError) and str(path) in str(err.value)


def test_env_args_that_are_not_json(tmp_path):
    path = demo_file(tmp_path)
    with h5py.File(path, "a") as f:
        f["data"].attrs["env_args"] = "{not json"
    refused(lambda: read_demos(path), f"{path}: data: attribute 'env_args' is not valid JSON")


# ------------------------------------------------------------------------------------------ malformed episodes
def test_zero_length_episode(tmp_path):
    path = demo_file(tmp_path)
    replace_dataset(path, "data/demo_1/actions", np.zeros((0, 2), np.float32))
    replace_dataset(path, "data/demo_1/obs/obs", np.zeros((0, 6), np.float32))
    refused(lambda: read_demos(path), f"{path}: data/demo_1 is an empty episode (0 steps)")


@pytest.mark.parametrize("rows", [13, 11])
def test_obs_and_action_lengths_differ(tmp_path, rows):
    """13 x 6 obs for 12 actions once failed in a reshape; 10 x 6 + 2 rows could have been reshaped silently."""
    path = demo_file(tmp_path)
    replace_dataset(path, "data/demo_2/obs/obs", np.zeros((rows, 6), np.float32))
    refused(lambda: read_demos(path), f"{path}: data/demo_2/obs/obs has {rows} rows, 'actions' has 12")


def test_reward_length_differs(tmp_path):
    path = demo_file(tmp_path)
    replace_dataset(path, "data/demo_0/rewards", np.zeros(5, np.float32))
    refused(lambda: read_demos(path), f"{path}: data/demo_0/rewards has 5 entries, 'actions' has 12")


def test_one_dimensional_actions(tmp_path):
    path = demo_file(tmp_path)
    replace_dataset(path, "data/demo_1/actions", np.zeros(12, np.float32))
    refused(lambda: read_demos(path), f"{path}: data/demo_1/actions must be 2-D [steps, act_dim], got shape (12,)")


def test_non_finite_action_names_demo_and_step(tmp_path):
    path = demo_file(tmp_path)
    with h5py.File(path, "a") as f:
        f["data/demo_2/actions"][3, 1] = np.inf
    refused(lambda: read_demos(path), f"{path}: data/demo_2/actions contains NaN or inf (first at step 3)")


def test_actions_far_outside_the_task_bounds_stop_bc_before_anything_is_written(tmp_path):
    """An action of 1e6 was accepted silently; the toy task's box is [-1, 1]^2."""
    task = get_task("toy")
    eps = task.generate(6, 0, 0.1)
    eps[4]["actions"] = np.asarray(eps[4]["actions"], np.float64)
    eps[4]["actions"][2, 0] = 1e6
    path = tmp_path / "scaled.hdf5"
    write_demos(path, eps, task.meta())
    out = tmp_path / "runs"
    cfg = bc_preset("toy", "tiny", str(path), steps=2, out_dir=str(out), only_success=False)
    refused(lambda: pretrain(cfg), f"{path}: data/demo_4/actions: action 1e+06 (step 2, dim 0) is far outside "
                                   "the task's action bounds [-1, 1]")
    assert not out.exists(), "nothing is written for refused demos"
    # small excursions past the bounds (noisy operators; the env clips them) are fine
    eps[4]["actions"][2, 0] = 1.3
    write_demos(path, eps, task.meta())
    assert read_demos(path, action_bounds=(-np.ones(2), np.ones(2))).num_episodes == 6


# ------------------------------------------------------------------------------------------------ Minari files
def minari_dir(root, episodes):
    (root / "data").mkdir(parents=True)
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        for i, ep in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            for k, v in ep.items():
                g[k] = v
    return root


def minari_episode(T: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"observations": rng.normal(size=(T + 1, 3)), "actions": rng.uniform(-1, 1, (T, 2)),
            "rewards": np.zeros(T), "terminations": np.arange(T) == T - 1, "truncations": np.zeros(T, bool)}


def test_minari_zero_byte_data_file(tmp_path):
    root = minari_dir(tmp_path / "ds", [minari_episode()])
    main = root / "data" / "main_data.hdf5"
    main.write_bytes(b"")
    refused(lambda: read_minari(str(root)), f"{main}: empty file (0 bytes)")
    refused(lambda: load_demos(str(root)), f"{main}: empty file (0 bytes)")


def test_minari_one_dimensional_and_empty_actions(tmp_path):
    eps = [minari_episode(seed=0), minari_episode(seed=1)]
    eps[1]["actions"] = np.zeros(5)
    main = minari_dir(tmp_path / "a", eps) / "data" / "main_data.hdf5"
    refused(lambda: read_minari(str(tmp_path / "a")), f"{main}: episode_1: 'actions' must be 2-D [steps, act_dim]")
    eps[1] = minari_episode(T=0, seed=1)  # one observation, no actions
    main = minari_dir(tmp_path / "b", eps) / "data" / "main_data.hdf5"
    refused(lambda: read_minari(str(tmp_path / "b")), f"{main}: episode_1: 'actions' is empty")


def test_minari_actions_far_outside_the_bounds(tmp_path):
    eps = [minari_episode(seed=0), minari_episode(seed=1)]
    eps[1]["actions"][3, 1] = -1e6
    main = minari_dir(tmp_path / "ds", eps) / "data" / "main_data.hdf5"
    bounds = (-np.ones(2), np.ones(2))
    refused(lambda: read_minari(str(tmp_path / "ds"), action_bounds=bounds),
            f"{main}: episode_1: 'actions': action -1e+06 (step 3, dim 1) is far outside")
    assert read_minari(str(tmp_path / "ds")).num_episodes == 2  # without a task nothing to compare with


def test_a_robomimic_file_read_as_minari_says_what_it_is(tmp_path):
    path = demo_file(tmp_path)
    refused(lambda: load_demos(str(path), "minari"), str(path), "no 'episode_<i>' groups")
