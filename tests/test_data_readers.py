"""Demo readers (flowft.data.readers): explicit success rules, success keys (`is_success`), obs key order and its
warning, one reader interface, and no import circle inside flowft.data."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from flowft.data.load import READERS, load_demos
from flowft.data.readers import DemoWarning, ReadOptions
from flowft.data.readers.hdf5 import read_demos
from flowft.data.readers.minari import read_minari
from flowft.errors import ConfigError, DataError

from test_minari_reader import box_episode, make_minari


def robomimic_file(path: Path, episodes: list[dict], env_args: dict | None = None) -> Path:
    """A hand-made robomimic-style file: each episode dict holds obs {key: [T, k]}, actions, rewards and optional
    dones, attrs {name: value} and infos {name: [T]} (no `success` attribute unless given)."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        if env_args is not None:
            data.attrs["env_args"] = json.dumps(env_args)
        for i, ep in enumerate(episodes):
            g = data.create_group(f"demo_{i}")
            for k, v in ep["obs"].items():
                g.create_dataset(f"obs/{k}", data=v)
            for k in ("actions", "rewards", "dones"):
                if k in ep:
                    g.create_dataset(k, data=ep[k])
            for k, v in ep.get("attrs", {}).items():
                g.attrs[k] = v
            for k, v in ep.get("infos", {}).items():
                g.create_dataset(f"infos/{k}", data=v)
    return path


def dense_episode(T: int, seed: int, **extra) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": {"obs": rng.normal(size=(T, 3))}, "actions": rng.uniform(-1, 1, (T, 2)),
            "rewards": -rng.uniform(0.1, 2.0, T), **extra}  # dense shaped reward: negative distances


def test_dense_rewards_are_never_guessed_successful(tmp_path):
    """The old rule max(reward) >= 0 would have kept all 6: dense negative rewards carry no success information."""
    path = robomimic_file(tmp_path / "d.hdf5", [dense_episode(5, i) for i in range(6)], {"obs_keys": ["obs"]})
    with pytest.warns(DemoWarning, match="6 of 6 episodes store no success flag"):
        d = read_demos(path)
    assert d.num_episodes == 6 and not d.episode_success.any()
    with pytest.warns(DemoWarning), pytest.raises(DataError, match=r"none of 6 episodes counts as successful.*"
                                                                    r"success rule: auto"):
        read_demos(path, only_success=True)
    assert read_demos(path, ReadOptions(success_rule="all", only_success=True)).num_episodes == 6


def test_explicit_rules_reward_terminal_and_all(tmp_path):
    eps = [dense_episode(4, 0, dones=[0, 0, 0, 1]), dense_episode(4, 1, dones=[0, 0, 0, 0]),
           dense_episode(4, 2, dones=[0, 0, 0, 0])]
    eps[2]["rewards"] = np.array([-1.0, -1.0, 0.0, 0.0])  # -1/0 sparse reward that reached the goal
    path = robomimic_file(tmp_path / "d.hdf5", eps, {"obs_keys": ["obs"]})
    got = {rule: read_demos(path, ReadOptions(success_rule=rule, success_reward=0.0 if rule == "reward" else None))
           .episode_success.tolist() for rule in ("terminal", "reward", "all")}
    assert got == {"terminal": [True, False, False], "reward": [False, False, True], "all": [True, True, True]}
    kept = read_demos(path, ReadOptions(success_rule="terminal", only_success=True))
    np.testing.assert_allclose(kept.actions, eps[0]["actions"].astype(np.float32))
    assert kept.env_meta["success_rule"] == "terminal (last dones entry)"


def test_success_flag_keys_attribute_per_step_and_infos(tmp_path):
    eps = [dense_episode(4, 0, infos={"is_success": [0, 0, 1, 1]}),  # gymnasium-robotics key, per step
           dense_episode(4, 1, infos={"is_success": [0, 0, 0, 0]}),
           dense_episode(4, 2, attrs={"success": True}),  # flowft / robomimic attribute
           dense_episode(4, 3, attrs={"done_ok": 1})]
    path = robomimic_file(tmp_path / "d.hdf5", eps, {"obs_keys": ["obs"]})
    with pytest.warns(DemoWarning, match="1 of 4"):  # episode 3 has neither default key
        assert read_demos(path).episode_success.tolist() == [True, False, True, False]
    with pytest.warns(DemoWarning, match="3 of 4"):  # --success-key replaces the default keys
        custom = read_demos(path, ReadOptions(success_key="done_ok"))
    assert custom.episode_success.tolist() == [False, False, False, True]
    with pytest.raises(DataError, match=r"data/demo_0: no success flag 'done_ok'.*--success-key"):
        read_demos(path, ReadOptions(success_key="done_ok", success_rule="flag"))


def test_minari_reads_infos_is_success_and_a_custom_key(tmp_path):
    eps = [box_episode(4, i, term=False) for i in range(3)]  # never terminate, dense rewards
    eps[0]["infos"] = {"is_success": np.array([0, 0, 0, 1, 1]), "goal_reached": np.zeros(5)}  # T+1 rows, as Minari
    eps[1]["infos"] = {"is_success": np.zeros(5), "goal_reached": np.zeros(5)}
    eps[2]["infos"] = {"is_success": np.zeros(5), "goal_reached": np.array([0, 1, 0, 0, 0])}
    root = make_minari(tmp_path / "ds", eps)
    assert read_minari(str(root)).episode_success.tolist() == [True, False, False]
    custom = read_minari(str(root), ReadOptions(success_key="goal_reached", success_rule="flag", only_success=True))
    assert custom.num_episodes == 1 and custom.env_meta["success_rule"] == "flag (goal_reached)"
    np.testing.assert_allclose(custom.actions, eps[2]["actions"])


def test_obs_key_order_warning_and_override(tmp_path):
    rng = np.random.default_rng(0)
    T = 4
    ep = {"obs": {"z_pos": rng.normal(size=(T, 2)), "a_vel": rng.normal(size=(T, 1))},
          "actions": rng.uniform(-1, 1, (T, 2)), "rewards": np.zeros(T), "attrs": {"success": True}}
    path = robomimic_file(tmp_path / "d.hdf5", [ep])  # no env_args: the file does not say the order
    with pytest.warns(DemoWarning, match=r"sorted order.*\['a_vel', 'z_pos'\].*--obs-keys"):
        d = read_demos(path)
    np.testing.assert_allclose(d.obs, np.concatenate([ep["obs"]["a_vel"], ep["obs"]["z_pos"]], 1).astype(np.float32))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit order is not warned about
        d = load_demos(str(path), obs_keys=["z_pos", "a_vel"])
    np.testing.assert_allclose(d.obs, np.concatenate([ep["obs"]["z_pos"], ep["obs"]["a_vel"]], 1).astype(np.float32))
    assert d.env_meta["obs_keys"] == ["z_pos", "a_vel"]


def test_minari_dict_obs_order_is_warned_and_obs_keys_override(tmp_path):
    T = 3
    ep = box_episode(T, 0, term=True)
    ep["observations"] = {"observation": np.full((T + 1, 2), 1.0), "desired_goal": np.full((T + 1, 1), 2.0),
                          "achieved_goal": np.full((T + 1, 1), 3.0)}
    root = make_minari(tmp_path / "ds", [ep])
    with pytest.warns(DemoWarning, match="FlattenObservation"):
        assert read_minari(str(root)).obs[0].tolist() == [1, 1, 2, 3]
    sorted_like_gym = read_minari(str(root), obs_keys=["achieved_goal", "desired_goal", "observation"])
    assert sorted_like_gym.obs[0].tolist() == [3, 2, 1, 1]


def test_options_are_validated():
    with pytest.raises(ConfigError, match="--success-reward is needed with --success-rule reward"):
        ReadOptions(success_rule="reward")
    with pytest.raises(ConfigError, match="only with it"):
        ReadOptions(success_rule="auto", success_reward=1.0)
    from flowft.algos.bc import BCConfig

    with pytest.raises(ConfigError, match="--success-reward is needed with --success-rule reward"):
        BCConfig(demos="x", success_rule="reward")
    opts = BCConfig(demos="x", obs_keys=("b", "a"), success_rule="reward", success_reward=0.5,
                    max_episodes=3).read_options()
    assert (opts.obs_keys, opts.success_rule, opts.success_reward, opts.only_success, opts.max_episodes) == \
        (("b", "a"), "reward", 0.5, True, 3)


def test_one_reader_per_format_behind_one_interface(tmp_path):
    assert sorted(READERS) == ["minari", "robomimic"]
    assert READERS["robomimic"].detect(["data"]) and not READERS["robomimic"].detect(["episode_0"])
    assert READERS["minari"].detect(["episode_0"]) and not READERS["minari"].detect(["data"])
    with pytest.raises(DataError, match="unknown demo format 'zarr'"):
        load_demos(str(tmp_path), "zarr")


def _imports(path: Path, package: str) -> set[str]:
    """Modules of `package` a file imports, at any depth (function-level imports count: they are circles too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith(package)}


def test_no_import_circle_in_flowft_data():
    root = Path(__file__).resolve().parents[1] / "src"
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / "flowft" / "data").rglob("*.py")}
    graph = {m: {d for d in _imports(p, "flowft.data") if d in files and d != m} for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, f"import circle: {' -> '.join(stack + [m, d])}"
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    assert "flowft.data.readers.hdf5" in graph["flowft.data.load"]  # the walk saw the reader modules
