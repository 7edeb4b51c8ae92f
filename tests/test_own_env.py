"""Your own env (issue 20): the adapter, the env-contract checker, env specs as task names, the presets user tasks
get, and the docs/own_env.md example end to end (on a fake env here; on FetchPush in the slow test)."""

from __future__ import annotations

import ast
import importlib.util
import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from fake_envs import (FETCH_LIKE_SPEC, EndlessEnv, FetchLike, PixelEnv, PointEnv, UnseededEnv, point_expert)

import flowft
from flowft import registry
from flowft.envs.adapter import FlowftAdapter
from flowft.envs.check import check_env
from flowft.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test resolves its specs anew (as a fresh process would); built-in tasks stay."""
    yield
    for name in [n for n in registry.TASKS if n not in registry.BUILTIN_TASKS]:
        del registry.TASKS[name]
    registry._CHECKED.clear()


def items(problems) -> list[str]:
    return sorted(p.item for p in problems)


# ----------------------------------------------------------------------------------------------- the adapter
def test_adapter_fixes_each_fetch_mismatch():
    env = FlowftAdapter(FetchLike(), success_key="is_success", terminate_on_success=True, sparse_reward=True,
                        obs_keys=["desired_goal", "observation"], rescale_actions=True)
    assert env.observation_space == gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    obs, info = env.reset(seed=3)
    g = env.unwrapped.g
    assert obs.dtype == np.float32 and obs.tolist() == [g, 0.0]  # desired_goal first: the stated order
    assert info["success"] is False
    rewards, terminated, t = [], False, 0
    while not terminated:  # policy action +-1 -> env action +-2 (FetchLike halves it) -> a full 0.25 step to the goal
        obs, r, terminated, truncated, info = env.step(np.array([np.sign(g)], np.float32))
        rewards.append(r)
        t += 1
        assert not truncated
    assert t == 4 and obs[1] == pytest.approx(g)  # 4 x 0.25 reaches |g| = 1
    assert rewards == [-1.0, -1.0, -1.0, 0.0] and info["success"] is True and info["is_success"] == 1.0


def test_adapter_action_rescale_and_back():
    env = FlowftAdapter(FetchLike(), rescale_actions=True)
    assert env.action(np.array([-1.0]))[0] == -2.0 and env.action(np.array([1.0]))[0] == 2.0
    assert env.action(np.array([0.25]))[0] == pytest.approx(0.5)
    assert env.action(np.array([3.0]))[0] == 2.0  # clamped to the bounds first
    demo = np.array([[-2.0], [0.5], [2.0]])  # env units -> [-1, 1]
    np.testing.assert_allclose(env.action_from_env(demo), [[-1.0], [0.25], [1.0]])
    with pytest.raises(ValueError, match="unbounded"):
        FlowftAdapter(_with_action_space(PointEnv(), gym.spaces.Box(-np.inf, np.inf, (1,))), rescale_actions=True)


def _with_action_space(env, space):
    env.action_space = space
    return env


def test_adapter_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"obs_keys \['goal'\] not in the observation Dict"):
        FlowftAdapter(FetchLike(), obs_keys=["goal"])
    env = FlowftAdapter(FetchLike(), success_key="done_ok")
    env.reset(seed=0)
    with pytest.raises(KeyError, match="no 'done_ok'.*is_success"):
        env.step(np.zeros(1, np.float32))


# ----------------------------------------------------------------------------------------------- the checker
def test_checker_passes_a_conforming_env():
    assert check_env(PointEnv) == []


def test_checker_names_each_fetch_mismatch():
    problems = check_env(FetchLike)
    assert items(problems) == ["action bounds", "flat observation", "success key"]
    msg = {p.item: p.message for p in problems}
    assert "set success_key='is_success'" in msg["success key"]
    assert "['achieved_goal', 'desired_goal', 'observation']" in msg["flat observation"]
    assert "[-2, 2]" in msg["action bounds"] and "rescale_actions" in msg["action bounds"]
    adapted = lambda: FlowftAdapter(FetchLike(), success_key="is_success", terminate_on_success=True,  # noqa: E731
                                    obs_keys=["observation", "desired_goal"], rescale_actions=True)
    assert check_env(adapted) == []


def test_checker_never_ending_episodes():
    (p,) = check_env(EndlessEnv, max_steps=50)
    assert p.item == "episode end" and p.fatal and "within 50 steps" in p.message


def test_checker_success_must_end_the_episode():
    # an expert reaches success; without terminate_on_success the episode goes on
    def fetch():
        return FlowftAdapter(FetchLike(), success_key="is_success", obs_keys=["observation", "desired_goal"],
                             rescale_actions=True)

    (p,) = check_env(fetch, policy=point_expert)
    assert p.item == "success ends episode" and "step 4" in p.message and "terminate_on_success" in p.message


def test_checker_non_reproducible_reset_and_pixels():
    (p,) = check_env(UnseededEnv)
    assert p.item == "reset(seed)" and not p.fatal and "seed=0" in p.message
    (p,) = check_env(PixelEnv)
    assert p.item == "flat observation" and "(2, 4, 4)" in p.message


def test_checker_float64_is_a_warning_and_the_adapter_casts():
    env = PointEnv()
    env.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float64)
    (p,) = check_env(env)
    assert p.item == "float32" and not p.fatal
    assert check_env(FlowftAdapter(env)) == []


# ----------------------------------------------------------------------------------------------- env specs
def test_unknown_task_is_one_line_config_and_key_error():
    with pytest.raises(ConfigError, match="unknown task 'lfit': not a built-in task") as err:
        registry.get_task("lfit")
    assert isinstance(err.value, KeyError) and "\n" not in str(err.value) and "docs/own_env.md" in str(err.value)


def test_broken_user_env_fails_at_startup_naming_each_item():
    with pytest.raises(ConfigError) as err:
        registry.get_task("fake_envs:make_fetch_like")
    msg = str(err.value)
    assert "\n" not in msg and "[success key]" in msg and "[flat observation]" in msg and "[action bounds]" in msg
    with pytest.warns(UserWarning, match=r"\[reset\(seed\)\]"):
        registry.get_task("fake_envs:UnseededEnv")


def test_spec_options_reach_the_task_and_its_envs():
    task = registry.get_task(FETCH_LIKE_SPEC)
    assert task.name == FETCH_LIKE_SPEC and task.chunk_len == 2 and task.simulator and task.gamma == 0.99
    env = task.make(False)
    assert env.observation_space.shape == (2,) and env.action_space.high.tolist() == [1.0]
    spec = json.loads(FETCH_LIKE_SPEC)
    assert flowft.env_task(spec.pop("env"), **spec) == json.dumps(json.loads(FETCH_LIKE_SPEC), sort_keys=True)
    assert registry.get_task("fake_envs:PointEnv").chunk_len == 4


@pytest.mark.parametrize("text, match", [
    ('{"env": "fake_envs:PointEnv", "succes_key": "x"}', "unknown option 'succes_key'"),
    ('{"env": "fake_envs:PointEnv", "chunk_len": "4"}', "'chunk_len' must be int"),
    ('{"env": "fake_envs:PointEnv", "check": 1}', "'check' must be bool"),
    ('{"kwargs": {}}', 'object with an "env" string'),
    ("{nope", "not valid JSON"),
    ("fake_envs:NoSuchThing", "has no callable, TaskSpec or gymnasium id 'NoSuchThing'"),
    ("no_such_module_xyz:make", "cannot import no_such_module_xyz"),
])
def test_bad_specs_are_one_line_config_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        registry.get_task(text)


def test_expert_demos_and_the_success_contract():
    eps = registry.get_task(FETCH_LIKE_SPEC).demos(3, seed=0, action_noise=0.0)
    assert [e["success"] for e in eps] == [True] * 3 and [len(e["actions"]) for e in eps] == [4, 4, 4]
    assert eps[0]["obs"]["obs"].shape == (4, 2) and eps[0]["rewards"].tolist() == [-1, -1, -1, 0]
    no_end = json.loads(FETCH_LIKE_SPEC)
    del no_end["terminate_on_success"]
    no_end["check"] = False  # a random probe never reaches success; the expert's demos catch it
    with pytest.raises(DataError, match=r"\[success ends episode\]"):
        registry.get_task(json.dumps(no_end)).demos(1, seed=0)


def test_register_task_is_public_and_presets_key_off_simulator():
    from flowft.presets import bc_preset, train_preset

    flowft.register_task(flowft.TaskSpec(name="my-point", make=lambda render=False: PointEnv()))
    sim = train_preset("ogpo-plus-ca", "my-point", "tiny")
    assert (sim.algo.best_of_n, sim.algo.bon_after_updates, sim.algo.critic_warmup, sim.algo.critic.num_heads) == (
        8, 2000, 1000, 10)
    assert (sim.run.env_steps, sim.run.start_training) == (100_000, 2_000)
    bc = bc_preset("my-point", "tiny", "d.hdf5")
    assert (bc.steps, bc.clip_sampler, bc.eval_episodes) == (20_000, "ode", 16)
    flowft.register_task(flowft.TaskSpec(name="my-point", make=lambda render=False: PointEnv(), simulator=False))
    plain = train_preset("ogpo-plus-ca", "my-point", "tiny")
    assert (plain.algo.best_of_n, plain.run.env_steps) == (8, 200_000)
    assert bc_preset("my-point", "tiny", "d.hdf5").steps == 100_000
    toy = train_preset("ogpo-plus-ca", "toy", "tiny")  # built-ins keep their presets
    assert (toy.algo.best_of_n, toy.run.env_steps) == (8, 12_000)
    with pytest.raises(NotImplementedError, match="no demo generator"):
        registry.get_task("my-point").demos(1, 0)


def test_task_slug_is_file_name_safe():
    assert registry.task_slug("lift") == "lift"
    assert registry.task_slug("gymnasium_robotics:FetchPush-v4") == "gymnasium_robotics-FetchPush-v4"
    slug = registry.task_slug(FETCH_LIKE_SPEC)
    assert slug.startswith("fake_envs-make_fetch_like-") and len(slug) == len("fake_envs-make_fetch_like-") + 8


def test_catalog_does_not_import_the_registry():
    tree = ast.parse((ROOT / "src/flowft/envs/catalog.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "flowft.registry" not in imported and "flowft" not in imported


# ----------------------------------------------------------------------------------------------- end to end
def _run_example(tmp_path, monkeypatch, task: str | None):
    monkeypatch.chdir(ROOT)  # the example's spec imports examples.fetch_push from the working directory
    from examples.fetch_push import SMOKE, TASK, main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(str(tmp_path), SMOKE, task or TASK)


def test_example_pipeline_on_a_fake_env_and_eval_from_the_config(tmp_path, monkeypatch, capsys):
    from flowft.cli import main as cli

    res = _run_example(tmp_path, monkeypatch, FETCH_LIKE_SPEC)
    run_dir = Path(res["run_dir"])
    assert json.loads((run_dir / "config.json").read_text())["run"]["task"] == FETCH_LIKE_SPEC
    assert 0.0 <= res["ode_success"] <= 1.0 and 0.0 <= res["bc_success"] <= 1.0
    registry.TASKS.pop(FETCH_LIKE_SPEC)  # as in a fresh process: only the run's config names the env
    assert cli(["eval", str(run_dir), "--samplers", "ode", "--episodes", "2", "--envs", "1"]) == 0
    assert any(line.split()[:1] == ["ode"] for line in capsys.readouterr().out.splitlines())  # its result row
    env = flowft.make_env(flowft.load_policy(run_dir))
    assert env.observation_space.shape == (2,) and isinstance(env, FlowftAdapter)


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif(importlib.util.find_spec("gymnasium_robotics") is None, reason="needs gymnasium-robotics")
def test_fetch_push_example_smoke(tmp_path, monkeypatch):
    res = _run_example(tmp_path, monkeypatch, None)
    cfg = json.loads((Path(res["run_dir"]) / "config.json").read_text())
    assert json.loads(cfg["run"]["task"])["env"] == "gymnasium_robotics:FetchPush-v4"
    assert 0.0 <= res["ode_success"] <= 1.0


@pytest.mark.sim
@pytest.mark.skipif(importlib.util.find_spec("gymnasium_robotics") is None, reason="needs gymnasium-robotics")
def test_fetch_push_expert_solves_the_task(monkeypatch):
    monkeypatch.chdir(ROOT)
    from examples.fetch_push import TASK

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eps = registry.get_task(TASK).demos(10, seed=0)  # with the default i.i.d. action noise 0.1
    assert sum(e["success"] for e in eps) >= 9
    assert eps[0]["obs"]["obs"].shape[1] == 28 and eps[0]["actions"].shape[1] == 4


def test_cli_demos_takes_an_env_spec_and_names_an_unknown_task(tmp_path, capsys):
    from flowft.cli import main as cli

    out = tmp_path / "demos.hdf5"
    assert cli(["demos", "--env", FETCH_LIKE_SPEC, "--episodes", "2", "--out", str(out)]) == 0
    assert out.exists() and "wrote 2 episodes" in capsys.readouterr().out
    assert cli(["demos", "--env", "lfit", "--out", str(tmp_path / "x.hdf5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flowft demos: unknown task 'lfit'") and "\n" not in err
