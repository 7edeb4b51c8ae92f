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
    # the env's build and its first seeded reset compile the robot's model (and Can's scene) twice, the second
    # compile is kept and every later rebuild reuses it; Lift's scene changes with the seed, so only its seed 11 comes
    # back (kept at its second sight, seed 12 not)
    builds = 1 + len(SEEDS)
    if task == "can":
        assert (hits, compiles) == (2 * (builds - 2), 4)
    else:
        assert (hits, compiles) == (builds - 2, 2 + builds)
    assert robosuite_cache.kept() == 2
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


def test_only_strings_that_come_back_are_kept_and_at_most_cache_size():
    """Memory (a robosuite model is ~60 MB): a string compiled once is not kept; a string compiled a second time is,
    and a copy of it answers the third; the least recently used kept model goes first."""
    pytest.importorskip("robosuite")
    from flowft.envs import robosuite_cache as rc

    def xml(i: int) -> str:
        return f'<mujoco><worldbody><body><freejoint/><geom size="{0.1 + i / 1000}"/></body></worldbody></mujoco>'

    rc.clear()
    for i in range(10):  # ten distinct strings: Lift's scenes
        assert rc.compiled_model(xml(i)).geom_size[0, 0] == pytest.approx(0.1 + i / 1000)
    assert rc.kept() == 0 and rc.stats() == (0, 10)
    for i in (0, 0, 1, 1, 2, 2, 3, 3):  # strings 0-3 come back (second sight), then hit
        rc.compiled_model(xml(i))
    assert rc.stats() == (4, 14) and rc.kept() == rc.CACHE_SIZE == 3
    rc.compiled_model(xml(0))  # evicted as the least recently used: compiled again, and seen for the first time again
    assert rc.stats() == (4, 15) and rc.kept() == 3
    rc.clear()
    assert rc.kept() == 0 and rc.stats() == (0, 0)
