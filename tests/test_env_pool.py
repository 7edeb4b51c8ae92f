"""shared_vec_envs (envs/make.py): vector envs given back inside the block are handed to the next request of the same
kind, act as new ones once reset with seeds, and are closed when the block ends; outside it, release closes."""

from __future__ import annotations

import numpy as np

from flowft.envs.make import make_vec_env, release_vec_env, reset_vec_env, shared_vec_envs
from flowft.registry import get_task


def _steps(venv, n: int) -> np.ndarray:
    """n steps of a fixed action sequence; the last observations."""
    obs = None
    for k in range(n):
        a = np.full((venv.num_envs, *venv.single_action_space.shape), np.sin(k), np.float32)
        obs = venv.step(a)[0]
    return obs


def test_a_released_env_is_reused_only_for_the_same_kind_and_closed_at_the_end():
    task = get_task("toy")
    with shared_vec_envs():
        first = make_vec_env(task, 2)
        release_vec_env(first)
        assert not first.closed
        again = make_vec_env(task, 2)
        assert again is first  # the released env, not a new one
        other_size = make_vec_env(task, 3)
        other_mode = make_vec_env(task, 2, vectorization="sync")  # toy is sync already: the same kind, but in use
        assert other_size is not first and other_mode is not first
        for venv in (again, other_size, other_mode):
            release_vec_env(venv)
        assert not any(v.closed for v in (first, other_size, other_mode))
    assert first.closed and other_size.closed and other_mode.closed  # the block closes what is idle


def test_outside_the_block_release_closes_and_a_closed_env_is_never_handed_out():
    task = get_task("toy")
    outside = make_vec_env(task, 2)
    release_vec_env(outside)
    assert outside.closed
    with shared_vec_envs():
        venv = make_vec_env(task, 2)
        venv.close()  # closed by its user instead of released
        release_vec_env(venv)
        fresh = make_vec_env(task, 2)
        assert fresh is not venv and not fresh.closed
        release_vec_env(fresh)


def test_a_reused_env_reset_with_seeds_acts_as_a_new_one():
    task = get_task("toy")
    new = make_vec_env(task, 3)
    expected = reset_vec_env(new, seed=7, stream=2)
    expected_after = _steps(new, 5)
    new.close()
    with shared_vec_envs():
        used = make_vec_env(task, 3)
        reset_vec_env(used, seed=1, stream=0)
        _steps(used, 11)  # mid-episode when given back, as after a BC evaluation
        release_vec_env(used)
        reused = make_vec_env(task, 3)
        assert reused is used
        np.testing.assert_array_equal(reset_vec_env(reused, seed=7, stream=2), expected)
        np.testing.assert_array_equal(_steps(reused, 5), expected_after)
        release_vec_env(reused)
