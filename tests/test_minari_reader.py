"""read_minari on small synthetic Minari-format datasets (h5py only, no minari package, no network)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from flowft.data.readers.minari import read_minari, resolve_minari_path


def _write(ds, name, value):
    """Write a (possibly nested dict) value under `name` the way Minari's HDF5 storage does."""
    if isinstance(value, dict):
        sub = ds.create_group(name, track_order=True)  # keep insertion order, as Minari does
        for k, v in value.items():
            _write(sub, k, v)
    else:
        ds.create_dataset(name, data=value)


def make_minari(root, episodes, dataset_id="test/synthetic-v0", order=None):
    """Minari layout: root/data/{main_data.hdf5, metadata.json}; episodes are dicts of the five keys."""
    data = root / "data"
    data.mkdir(parents=True)
    with h5py.File(data / "main_data.hdf5", "w", track_order=True) as f:
        for i in order if order is not None else range(len(episodes)):
            g = f.create_group(f"episode_{i}", track_order=True)
            g.attrs["id"] = i
            for key, val in episodes[i].items():
                _write(g, key, val)
    meta = {"dataset_id": dataset_id, "total_episodes": len(episodes), "data_format": "hdf5",
            "total_steps": int(sum(len(e["actions"]) for e in episodes if "actions" in e))}
    (data / "metadata.json").write_text(json.dumps(meta))
    return root


def box_episode(T, seed, term=False, rewards=None, do=3, da=2):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(T + 1, do)),
        "actions": rng.uniform(-1, 1, size=(T, da)).astype(np.float32),
        "rewards": rng.normal(size=T) if rewards is None else np.asarray(rewards, np.float64),
        "terminations": np.array([False] * (T - 1) + [term]),
        "truncations": np.array([False] * (T - 1) + [not term]),
    }


TASK_DIMS = {"microwave": 1, "kettle": 7, "light_switch": 2}


def kitchen_episode(T, seed, term=False, rewards=None, extra=False):
    rng = np.random.default_rng(seed)
    obs = {
        # insertion order deliberately differs from the expected flattening order
        "achieved_goal": {k: rng.normal(size=(T + 1, d)) for k, d in [("microwave", 1), ("light_switch", 2), ("kettle", 7)]},
        "observation": rng.normal(size=(T + 1, 5)),
        "desired_goal": {k: np.tile(rng.normal(size=d), (T + 1, 1)) for k, d in [("light_switch", 2), ("kettle", 7), ("microwave", 1)]},
    }
    if extra:
        obs["aux"] = {"z": rng.normal(size=(T + 1,)), "a": {"img": rng.integers(0, 255, size=(T + 1, 2, 2), dtype=np.uint8)}}
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(T, 9)),
        "rewards": np.zeros(T) if rewards is None else np.asarray(rewards, np.float64),
        "terminations": np.array([False] * (T - 1) + [term]),
        "truncations": np.array([False] * (T - 1) + [not term]),
    }


def expected_kitchen_obs(ep, extra=False):
    o = ep["observations"]
    parts = [o["observation"]]
    parts += [o["desired_goal"][k] for k in sorted(TASK_DIMS)]
    parts += [o["achieved_goal"][k] for k in sorted(TASK_DIMS)]
    if extra:
        parts += [o["aux"]["a"]["img"].reshape(len(o["observation"]), -1), o["aux"]["z"][:, None]]
    return np.concatenate(parts, 1)[:-1].astype(np.float32)


# ---------------------------------------------------------------- flat Box observations


def test_box_round_trip_and_episode_order(tmp_path):
    lens = [4, 7, 3, 5, 2, 6, 3, 4, 5, 2, 8, 3]  # 12 episodes: episode_10 must come after episode_9
    eps = [box_episode(T, seed=i) for i, T in enumerate(lens)]
    order = [11, 3, 0, 10, 1, 2, 9, 4, 5, 8, 6, 7]  # written out of order
    root = make_minari(tmp_path / "ds", eps, order=order)
    d = read_minari(str(root))
    assert d.num_episodes == 12
    np.testing.assert_array_equal(d.episode_ends, np.cumsum(lens))
    assert d.obs.shape == (sum(lens), 3) and d.actions.shape == (sum(lens), 2) and d.rewards.shape == (sum(lens),)
    assert d.obs.dtype == np.float32 and d.actions.dtype == np.float32
    np.testing.assert_allclose(d.obs, np.concatenate([e["observations"][:-1] for e in eps]).astype(np.float32))
    np.testing.assert_allclose(d.actions, np.concatenate([e["actions"] for e in eps]))
    np.testing.assert_allclose(d.rewards, np.concatenate([e["rewards"] for e in eps]).astype(np.float32))
    # obs[t] is the observation *before* action t: episode 1's first row is its initial observation
    np.testing.assert_allclose(d.obs[lens[0]], eps[1]["observations"][0].astype(np.float32))
    assert d.env_meta["obs_layout"] == ["observations[3]"] and d.env_meta["action_dim"] == 2
    assert d.env_meta["dataset_id"] == "test/synthetic-v0" and d.env_meta["source"] == "minari"
    # the result plugs into the existing chunk sampler
    o, a, v = d.sample_chunks(16, 4, np.random.default_rng(0))
    assert o.shape == (16, 3) and a.shape == (16, 4, 2) and v.shape == (16, 4)


def test_success_flags_only_success_and_max_episodes(tmp_path):
    eps = [
        box_episode(5, 0, term=True),                           # terminated -> success
        box_episode(5, 1, term=False),                          # dense rewards, truncated -> failure
        box_episode(4, 2, term=False, rewards=[0, 0, 1, 0]),    # sparse 0/1 goal reward seen -> success
        box_episode(4, 3, term=False, rewards=[0, 0, 0, 0]),    # sparse, never reached -> failure
        box_episode(3, 4, term=False, rewards=[-1, -1, 0]),     # negative rewards never imply success
        box_episode(3, 5, term=True),
    ]
    root = make_minari(tmp_path / "ds", eps)
    d = read_minari(str(root))
    np.testing.assert_array_equal(d.episode_success, [True, False, True, False, False, True])
    s = read_minari(str(root), only_success=True)
    np.testing.assert_array_equal(s.episode_ends, [5, 9, 12])
    np.testing.assert_allclose(s.actions, np.concatenate([eps[i]["actions"] for i in (0, 2, 5)]))
    assert s.episode_success.all()
    m = read_minari(str(root), only_success=True, max_episodes=2)
    np.testing.assert_array_equal(m.episode_ends, [5, 9])
    m = read_minari(str(root), max_episodes=1)
    assert m.num_episodes == 1 and len(m.obs) == 5


def test_infos_success_group(tmp_path):
    eps = [box_episode(4, 0), box_episode(4, 1)]
    eps[0]["infos"] = {"success": np.array([False, True, True, False])}
    eps[1]["infos"] = {"success": np.zeros(4, bool)}
    d = read_minari(str(make_minari(tmp_path / "ds", eps)))
    np.testing.assert_array_equal(d.episode_success, [True, False])


# ---------------------------------------------------------------- dict observations (Kitchen-like)


def test_kitchen_dict_obs_flatten_order_and_values(tmp_path):
    eps = [kitchen_episode(6, 0, term=True), kitchen_episode(4, 1)]
    d = read_minari(str(make_minari(tmp_path / "ds", eps)))
    exp = np.concatenate([expected_kitchen_obs(e) for e in eps])
    assert d.obs.shape == (10, 5 + 10 + 10)
    np.testing.assert_allclose(d.obs, exp)
    assert d.env_meta["obs_layout"] == [
        "observation[5]", "desired_goal/kettle[7]", "desired_goal/light_switch[2]", "desired_goal/microwave[1]",
        "achieved_goal/kettle[7]", "achieved_goal/light_switch[2]", "achieved_goal/microwave[1]"]
    sl = d.env_meta["obs_slices"]
    assert sl["observation"] == [0, 5] and sl["desired_goal/kettle"] == [5, 12] and sl["achieved_goal/microwave"] == [24, 25]
    np.testing.assert_allclose(d.obs[:6, slice(*sl["achieved_goal/light_switch"])],
                               eps[0]["observations"]["achieved_goal"]["light_switch"][:-1].astype(np.float32))
    assert d.env_meta["obs_dim"] == 25 and d.actions.shape == (10, 9)
    np.testing.assert_array_equal(d.episode_success, [True, False])


def test_nested_extra_keys_sorted_after_goal_keys(tmp_path):
    eps = [kitchen_episode(3, 0, extra=True), kitchen_episode(5, 1, extra=True)]
    d = read_minari(str(make_minari(tmp_path / "ds", eps)))
    np.testing.assert_allclose(d.obs, np.concatenate([expected_kitchen_obs(e, extra=True) for e in eps]))
    assert d.env_meta["obs_layout"][-2:] == ["aux/a/img[4]", "aux/z[1]"]


def test_obs_keys_select_and_order(tmp_path):
    eps = [kitchen_episode(4, 0), kitchen_episode(3, 1)]
    root = make_minari(tmp_path / "ds", eps)
    d = read_minari(str(root), obs_keys=["achieved_goal", "observation"])
    o = eps[0]["observations"]
    exp0 = np.concatenate([o["achieved_goal"][k] for k in sorted(TASK_DIMS)] + [o["observation"]], 1)[:-1]
    np.testing.assert_allclose(d.obs[:4], exp0.astype(np.float32))
    assert d.obs.shape[1] == 15 and d.env_meta["obs_keys"][-1] == "observation"
    d = read_minari(str(root), obs_keys=["observation", "desired_goal/kettle"])
    np.testing.assert_allclose(d.obs[4:, 5:], eps[1]["observations"]["desired_goal"]["kettle"][:-1].astype(np.float32))
    with pytest.raises(ValueError, match=r"episode_0: 'observations' is missing key 'robot_state'"):
        read_minari(str(root), obs_keys=["robot_state"])


def test_kitchen_cumulative_task_count_success(tmp_path):
    # D4RL-kitchen-style reward = number of tasks completed so far (3 tasks here), never terminated
    eps = [kitchen_episode(5, 0, rewards=[0, 1, 2, 3, 3]), kitchen_episode(5, 1, rewards=[0, 1, 1, 2, 2]),
           kitchen_episode(3, 2, term=True)]
    d = read_minari(str(make_minari(tmp_path / "ds", eps)))
    np.testing.assert_array_equal(d.episode_success, [True, False, True])


# ---------------------------------------------------------------- path / id resolution


def test_id_resolution_via_env_var(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    make_minari(root / "D4RL" / "kitchen" / "complete-v2", [kitchen_episode(4, 0, term=True)],
                dataset_id="D4RL/kitchen/complete-v2")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.chdir(tmp_path)
    d = read_minari("D4RL/kitchen/complete-v2")
    assert d.env_meta["dataset_id"] == "D4RL/kitchen/complete-v2" and d.num_episodes == 1
    # the data directory and the HDF5 file itself are accepted too
    main = root / "D4RL" / "kitchen" / "complete-v2" / "data" / "main_data.hdf5"
    assert resolve_minari_path(main.parent) == main and resolve_minari_path(main) == main
    with pytest.raises(FileNotFoundError, match="never downloads"):
        read_minari("D4RL/kitchen/mixed-v2")


def test_id_resolution_default_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    make_minari(tmp_path / "home" / ".minari" / "datasets" / "mujoco" / "hopper" / "expert-v0", [box_episode(3, 0)])
    d = read_minari("mujoco/hopper/expert-v0")
    assert d.num_episodes == 1 and len(d.obs) == 3


# ---------------------------------------------------------------- bad files


def _bad_missing_actions(eps):
    del eps[1]["actions"]


def _bad_nan_obs(eps):
    eps[1]["observations"]["desired_goal"]["kettle"][2, 3] = np.nan


def _bad_nan_actions(eps):
    eps[0]["actions"][1, 0] = np.inf


def _bad_obs_not_longer(eps):
    o = eps[1]["observations"]
    for grp in ("desired_goal", "achieved_goal"):
        o[grp] = {k: v[:-1] for k, v in o[grp].items()}
    o["observation"] = o["observation"][:-1]


def _bad_leaf_rows(eps):
    eps[1]["observations"]["achieved_goal"]["kettle"] = eps[1]["observations"]["achieved_goal"]["kettle"][:-1]


def _bad_obs_dims(eps):
    eps[1]["observations"]["observation"] = np.zeros((len(eps[1]["actions"]) + 1, 6))


def _bad_action_dims(eps):
    eps[1]["actions"] = np.zeros((len(eps[1]["actions"]), 8))


def _bad_reward_len(eps):
    eps[1]["rewards"] = np.zeros(2)


@pytest.mark.parametrize("corrupt, pattern", [
    (_bad_missing_actions, r"episode_1: missing key 'actions'"),
    (_bad_nan_obs, r"episode_1: 'observations/desired_goal/kettle' contains NaN or inf \(first at step 2\)"),
    (_bad_nan_actions, r"episode_0: 'actions' contains NaN or inf"),
    (_bad_obs_not_longer, r"episode_1: 'observations' has 4 rows, expected len\(actions\)\+1 = 5"),
    (_bad_leaf_rows, r"episode_1: 'observations/achieved_goal/kettle' has 4 rows"),
    (_bad_obs_dims, r"episode_1: inconsistent dims"),
    (_bad_action_dims, r"episode_1: inconsistent dims.*action dim 8"),
    (_bad_reward_len, r"episode_1: 'rewards' has 2 entries, 'actions' has 4"),
])
def test_bad_files_raise_one_clear_error(tmp_path, corrupt, pattern):
    eps = [kitchen_episode(3, 0), kitchen_episode(4, 1)]
    corrupt(eps)
    root = make_minari(tmp_path / "ds", eps)
    with pytest.raises(ValueError, match=pattern) as ei:
        read_minari(str(root))
    assert "main_data.hdf5" in str(ei.value)


def test_not_a_minari_file(tmp_path):
    (tmp_path / "ds" / "data").mkdir(parents=True)
    with h5py.File(tmp_path / "ds" / "data" / "main_data.hdf5", "w") as f:
        f.create_group("data")  # robomimic layout, not Minari
    with pytest.raises(ValueError, match="no 'episode_<i>' groups"):
        read_minari(str(tmp_path / "ds"))


def test_box_obs_rejects_obs_keys(tmp_path):
    root = make_minari(tmp_path / "ds", [box_episode(3, 0)])
    with pytest.raises(ValueError, match="plain array"):
        read_minari(str(root), obs_keys=["observation"])


def test_tuple_obs_ordered_by_index(tmp_path):
    T = 3
    ep = box_episode(T, 0)
    ep["observations"] = {f"_index_{i}": np.full((T + 1, 1), float(i)) for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)}
    d = read_minari(str(make_minari(tmp_path / "ds", [ep])))
    np.testing.assert_array_equal(d.obs[0], np.arange(11, dtype=np.float32))
    assert d.env_meta["obs_keys"][:3] == ["_index_0", "_index_1", "_index_2"]


def test_load_demos_auto_detects_both_formats(tmp_path):
    """`flowft pretrain --demos` accepts our/robomimic HDF5 files and Minari datasets alike."""
    from flowft.data.load import load_demos
    from flowft.data.readers.hdf5 import write_demos
    from flowft.registry import get_task

    task = get_task("toy")
    write_demos(tmp_path / "r.hdf5", task.generate(3, 0, 0.1), task.meta())
    assert load_demos(str(tmp_path / "r.hdf5")).num_episodes == 3
    ds_dir = tmp_path / "mini"
    make_minari(ds_dir, [box_episode(5, 0, term=True), box_episode(4, 1)])
    assert load_demos(str(ds_dir)).num_episodes == 2
