"""envs/robosuite_cache.py: seeded resets reuse compiled MuJoCo models of identical XML, and episodes stay
bit-identical to robosuite's own compile-every-rebuild path (known answer: the uncached rollouts)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.sim

ACTIONS = np.random.default_rng(3).uniform(-1, 1, (10, 7))  # a fixed open-loop action sequence
SEEDS = (11, 12, 11)  # a new seed, another, and back: every reset with a new seed rebuilds the model


def _rollouts(task: str) -> list[np.ndarray]:
    from flowft.envs.robosuite_tasks import RobosuiteEnv

    env = RobosuiteEnv(task)
    out = []
    for seed in SEEDS:
        obs = [env.reset(seed=seed)[0]] + [env.step(a)[0] for a in ACTIONS]
        out.append(np.stack(obs))
    env.close()
    return out


@pytest.mark.parametrize("task", ["lift", "can"])
def test_cached_compiles_give_the_episodes_of_fresh_compiles(task, monkeypatch):
    pytest.importorskip("robosuite")
    import mujoco

    from flowft.envs import robosuite_cache

    robosuite_cache.clear()
    cached = _rollouts(task)
    hits, compiles = robosuite_cache.stats()
    # the robot's model is compiled once (and on can the scene too); every later rebuild reuses them
    assert hits >= len(SEEDS) and compiles <= (2 if task == "can" else 2 + len(SEEDS))
    with monkeypatch.context() as m:  # robosuite's own path: a fresh compile of every XML string
        m.setattr(robosuite_cache, "compiled_model", lambda xml: mujoco.MjModel.from_xml_string(xml))
        fresh = _rollouts(task)
    for a, b in zip(cached, fresh):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(cached[0], cached[1])  # the seeds play different episodes
    np.testing.assert_array_equal(cached[0], cached[2])  # and a seed replays its own


def test_every_compiled_model_handed_out_is_a_private_copy():
    pytest.importorskip("robosuite")
    from flowft.envs.robosuite_cache import compiled_model

    xml = '<mujoco><worldbody><body><freejoint/><geom size="0.1"/></body></worldbody></mujoco>'
    a, b = compiled_model(xml), compiled_model(xml)
    a.opt.timestep, a.geom_size[0, 0] = 0.5, 9.0  # robosuite writes into its model (initialize_time)
    assert b.opt.timestep == 0.002 and b.geom_size[0, 0] == pytest.approx(0.1)
    assert compiled_model(xml).opt.timestep == 0.002
