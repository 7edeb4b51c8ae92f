"""Franka Kitchen (gymnasium-robotics FrankaKitchen-v1) wrapper and scripted IK demos."""

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from flowft.envs.kitchen import (  # noqa: E402
    DATASET_TASKS,
    KitchenEnv,
    env_meta,
    generate_episodes,
    rollout_expert,
)

pytestmark = pytest.mark.sim


def _check_episode(ep, do):
    T = len(ep["actions"])
    assert ep["obs"]["obs"].shape == (T, do) and ep["obs"]["obs"].dtype == np.float32
    assert ep["actions"].shape == (T, 9) and ep["actions"].dtype == np.float32
    assert np.all(np.abs(ep["actions"]) <= 1.0)
    assert ep["rewards"].dtype == np.float32 and ep["dones"].dtype == bool
    assert ep["dones"][-1] and not ep["dones"][:-1].any()
    if ep["success"]:
        assert ep["rewards"][-1] == 0.0 and np.all(ep["rewards"][:-1] == -1.0)
    else:
        assert np.all(ep["rewards"] == -1.0)


def test_kitchen_spaces_and_failure():
    env = KitchenEnv(seed=0)
    assert env.observation_space.shape == (81,)  # 59 + 2 * (1 + 7 + 2 + 1)
    assert env.action_space.shape == (9,)
    obs, info = env.reset()
    assert obs.shape == (81,) and obs.dtype == np.float32
    assert info == {"success": False, "tasks_done": 0}
    # desired goal block (sorted keys: kettle, light switch, microwave, slide cabinet)
    np.testing.assert_allclose(obs[59:70], [-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06, -0.69, -0.05, -0.75, 0.37], atol=1e-6)
    for _ in range(5):
        obs, r, term, trunc, info = env.step(np.zeros(9))
        assert r == -1.0 and not term and not trunc
        assert info["success"] is False and info["tasks_done"] == 0
    json.dumps(env_meta())


def test_kitchen_single_task_success_and_truncation():
    env = KitchenEnv(("slide cabinet",), max_episode_steps=150)
    assert env.observation_space.shape == (61,)
    ep = rollout_expert(env, ("slide cabinet",), seed=0)
    _check_episode(ep, 61)
    assert ep["success"] and ep["tasks_done"] == 1 and len(ep["rewards"]) < 150
    # a plan that does not touch the target task runs into truncation
    env = KitchenEnv(("microwave",), max_episode_steps=80)
    ep = rollout_expert(env, ("light switch",), seed=0)
    assert not ep["success"] and len(ep["rewards"]) == 80 and ep["tasks_done"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["microwave", "kettle", "light switch", "slide cabinet", "bottom burner"])
def test_kitchen_skill(task):
    env = KitchenEnv((task,), max_episode_steps=300)
    ok = sum(rollout_expert(env, (task,), seed=s, jitter=0.01)["success"] for s in range(3))
    assert ok == 3


@pytest.mark.slow
def test_kitchen_complete_chain():
    eps = generate_episodes(3, seed=0, dataset="complete", action_noise=0.05)
    for ep in eps:
        _check_episode(ep, 81)
        assert ep["plan"] == list(DATASET_TASKS["complete"])
    assert sum(ep["success"] for ep in eps) >= 2
    assert all(ep["tasks_done"] >= 3 for ep in eps)


@pytest.mark.slow
def test_kitchen_partial_and_mixed():
    eps = generate_episodes(4, seed=1, dataset="partial")
    assert any(ep["success"] for ep in eps[0::2])
    assert not any(ep["success"] for ep in eps[1::2])
    target = set(DATASET_TASKS["mixed"])
    eps = generate_episodes(4, seed=2, dataset="mixed")
    for ep in eps:
        _check_episode(ep, 59 + 2 * 12)
        assert not ep["success"] and not target <= set(ep["plan"])
        assert ep["tasks_done"] >= 1


def test_import_error_message(monkeypatch):
    import builtins

    import flowft.envs.kitchen as k

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith("gymnasium_robotics"):
            raise ImportError("no")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"flowft\[kitchen\]"):
        k.KitchenEnv()
