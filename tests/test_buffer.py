"""Replay buffer: chunk sampling, success tagging at episode end, persistence, bad input."""

import numpy as np
import pytest
import torch

from flowft.data.buffer import ReplayBuffer


def fill(buf, T, done_at=(), success_at=(), trunc_at=()):
    """One env (N=1); obs = step index, action = step index."""
    for t in range(T):
        term, trunc = t in done_at, t in trunc_at
        buf.add_batch(np.full((1, 2), t, np.float32), np.full((1, 1), t, np.float32), np.array([-1.0]),
                      np.array([term]), np.array([trunc]), np.full((1, 2), t + 0.5, np.float32),
                      np.array([t in success_at]))


def test_success_tagging_marks_whole_episode_only_at_its_end():
    buf = ReplayBuffer(1, 100, 2, 1, 3)
    fill(buf, 4)
    assert not buf.success.any()  # episode still running: nothing tagged
    fill_more = [(4, True, True)]  # step 4 terminates successfully
    for t, term, succ in fill_more:
        buf.add_batch(np.full((1, 2), t, np.float32), np.full((1, 1), t, np.float32), np.array([0.0]),
                      np.array([term]), np.array([False]), np.full((1, 2), t + 0.5, np.float32), np.array([succ]))
    assert buf.success[0, :5].all() and buf.num_success_episodes == 1
    # a failed (truncated) second episode is not tagged
    for t in range(5, 9):
        buf.add_batch(np.full((1, 2), t, np.float32), np.full((1, 1), t, np.float32), np.array([-1.0]),
                      np.array([False]), np.array([t == 8]), np.full((1, 2), t + 0.5, np.float32), np.array([False]))
    assert not buf.success[0, 5:9].any()


@pytest.mark.parametrize("N, env", [(1, 0), (3, 1)])
def test_a_success_after_failed_episodes_tags_only_its_own_episode(N, env):
    """Episodes of env `env`: 0-3 fails (truncated), 4-6 fails (terminated without success), 7-10 succeeds: only
    steps 7-10 are tagged, and the success sampler returns only their chunks. The other envs never succeed."""
    buf = ReplayBuffer(N, 100 * N, 2, 1, 2)
    ends = {3: ("trunc", False), 6: ("term", False), 10: ("term", True)}
    for t in range(13):
        kind, succ = ends.get(t, (None, False))
        onehot = np.arange(N) == env
        buf.add_batch(np.full((N, 2), t, np.float32), np.full((N, 1), t, np.float32), -np.ones(N),
                      onehot & (kind == "term"), onehot & (kind == "trunc"), np.full((N, 2), t + 0.5, np.float32),
                      onehot & succ)
    assert np.flatnonzero(buf.success[env, :13]).tolist() == [7, 8, 9, 10]
    assert buf.num_success_episodes == 1 and not np.delete(buf.success, env, axis=0).any()
    b = buf.sample(200, success=True)
    assert set(b.obs[:, 0].tolist()) == {7.0, 8.0, 9.0, 10.0}  # starts 7..10 (chunk 10 runs into step 11)
    assert buf.finished_episodes(5) == [(env, 0, 4), (env, 4, 7), (env, 7, 11)]


def test_chunk_sampling_masks_steps_after_episode_end_and_pads_actions():
    buf = ReplayBuffer(1, 100, 2, 1, 3)
    fill(buf, 10, done_at=(4,))
    b = buf.gather(np.array([0, 0]), np.array([3, 0]))
    assert b.valid.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert b.actions[0, :, 0].tolist() == [3, 4, 4]  # padded with the last valid action
    assert b.rewards[0].tolist() == [-1, -1, 0]
    assert b.terminals[0].tolist() == [0, 1, 0]
    assert b.boot_obs[0].tolist() == [4.5, 4.5]  # final obs of the terminal step
    assert b.boot_obs[1].tolist() == [2.5, 2.5]  # = obs at t + H


def test_sample_only_returns_fully_written_chunks_and_success_sampler():
    buf = ReplayBuffer(1, 100, 2, 1, 4)
    fill(buf, 6, done_at=(2,), success_at=(2,))
    assert buf.can_sample(success=True)
    b = buf.sample(256, success=True)
    assert set(b.obs[:, 0].tolist()) <= {0.0, 1.0, 2.0}
    b = buf.sample(512)
    assert b.obs[:, 0].max().item() <= 6 - 4  # start + H - 1 must be written


def test_ring_wraparound_keeps_only_recent_starts():
    buf = ReplayBuffer(1, 8, 2, 1, 2)
    fill(buf, 20)
    b = buf.sample(500)
    assert b.obs[:, 0].min().item() >= 12 and b.obs[:, 0].max().item() <= 18


def test_save_load_round_trip(tmp_path):
    buf = ReplayBuffer(2, 50, 2, 1, 3, seed=1)
    for t in range(12):
        buf.add_batch(np.random.rand(2, 2), np.random.rand(2, 1), -np.ones(2), np.array([t == 5, False]),
                      np.array([False, t == 9]), np.random.rand(2, 2), np.array([t == 5, False]))
    buf.save(tmp_path / "b.safetensors")
    other = ReplayBuffer(2, 50, 2, 1, 3, seed=99)
    other.load(tmp_path / "b.safetensors")
    assert other.total == buf.total and other.num_success_episodes == 1
    assert np.array_equal(other.success, buf.success) and np.array_equal(other.obs, buf.obs)
    a, b = buf.sample(16), other.sample(16)  # RNG state restored too
    assert torch.equal(a.obs, b.obs)
    with pytest.raises(ValueError, match="obs_dim"):
        ReplayBuffer(2, 50, 3, 1, 3).load(tmp_path / "b.safetensors")


def test_bad_input_is_rejected_with_field_name():
    buf = ReplayBuffer(2, 50, 2, 1, 3)
    ok = dict(obs=np.zeros((2, 2)), actions=np.zeros((2, 1)), rewards=np.zeros(2), terminated=np.zeros(2, bool),
              truncated=np.zeros(2, bool), next_obs=np.zeros((2, 2)), success=np.zeros(2, bool))
    with pytest.raises(ValueError, match="obs must be"):
        buf.add_batch(**{**ok, "obs": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="actions must be"):
        buf.add_batch(**{**ok, "actions": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="next_obs"):
        buf.add_batch(**{**ok, "next_obs": np.full((2, 2), np.nan)})
    assert buf.total == 0  # nothing was written
    with pytest.raises(RuntimeError, match="no successful chunk"):
        buf.sample(4, success=True)
