"""Known-answer tests of data/buffer.py that kill the behaviour-changing survivors of mutation testing (issue 22,
benchmarks/mutation.sh; docs/testing.md lists the equivalent ones): the edges of the sampled start range (exactly
one chunk stored, a wrapped ring), success tagging in a wrapped ring, dtypes, seeding, and the error messages that
name the offending field. Milliseconds each.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from flowft.data.buffer import ReplayBuffer


def step(buf, t, term=False, trunc=False, succ=False, n=None):
    """One step of every env (or only env n ending): obs = (t, t), action = t, reward -1."""
    N = buf.N
    onehot = np.ones(N, bool) if n is None else np.arange(N) == n
    buf.add_batch(np.full((N, 2), t, np.float32), np.full((N, 1), t, np.float32), -np.ones(N), onehot & term,
                  onehot & trunc, np.full((N, 2), t + 0.5, np.float32), onehot & succ)


def run(buf, T, ends=None):
    """ends: {t: (kind, success)} with kind 'term' or 'trunc' (all envs alike)."""
    for t in range(T):
        kind, succ = (ends or {}).get(t, (None, False))
        step(buf, t, kind == "term", kind == "trunc", succ)


# ------------------------------------------------------------------------------------- construction
def test_capacity_must_hold_one_chunk_per_env():
    ReplayBuffer(2, 8, 2, 1, 4)  # exactly N*H: allowed
    with pytest.raises(ValueError, match=r"^buffer capacity 7 must be >= num_envs\*chunk_len = 8$"):
        ReplayBuffer(2, 7, 2, 1, 4)


def test_storage_and_batches_are_float32_and_bool():
    buf = ReplayBuffer(1, 16, 2, 1, 2)
    run(buf, 5, {3: ("term", True)})
    for k in ("obs", "next_obs", "actions", "rewards"):
        assert getattr(buf, k).dtype == np.float32, k
    for k in ("terminated", "ends", "success"):
        assert getattr(buf, k).dtype == np.bool_, k
    b = buf.sample(4)
    for k in ("obs", "actions", "rewards", "terminals", "ends", "valid", "boot_obs"):
        assert getattr(b, k).dtype == torch.float32, k


def test_the_seed_fixes_the_draws_and_defaults_to_zero():
    def draws(**kw):
        buf = ReplayBuffer(2, 64, 2, 1, 2, **kw)
        run(buf, 20)
        return buf.sample(16).obs[:, 0].tolist()

    assert draws(seed=3) == draws(seed=3) and draws(seed=3) != draws(seed=4)
    assert draws() == draws(seed=0)


def test_len_counts_stored_transitions_of_all_envs():
    buf = ReplayBuffer(3, 12, 2, 1, 2)  # C = 4 per env
    assert len(buf) == 0
    run(buf, 3)
    assert len(buf) == 9
    run(buf, 5)
    assert len(buf) == 12  # wrapped: every slot holds one


# ------------------------------------------------------------------------------------- add_batch input
def test_add_batch_rejects_a_next_obs_of_another_shape():
    buf = ReplayBuffer(1, 8, 2, 1, 2)
    with pytest.raises(ValueError, match=r"next_obs \(1, 3\)"):
        buf.add_batch(np.zeros((1, 2)), np.zeros((1, 1)), [0.0], [False], [False], np.zeros((1, 3)), [False])


@pytest.mark.parametrize("field", ["obs", "next_obs", "actions", "rewards"])
def test_a_non_finite_transition_names_its_field(field):
    buf = ReplayBuffer(1, 8, 2, 1, 2)
    args = {"obs": np.zeros((1, 2)), "actions": np.zeros((1, 1)), "rewards": np.zeros(1),
            "next_obs": np.zeros((1, 2))}
    args[field] = args[field] + np.nan
    with pytest.raises(ValueError, match=rf"^non-finite values in transition field '{field}'$"):
        buf.add_batch(args["obs"], args["actions"], args["rewards"], [False], [False], args["next_obs"], [False])


def test_episode_flags_may_come_as_0_1_numbers():
    """terminated / truncated / success as float 0/1 arrays (what some wrappers return) read as booleans."""
    buf = ReplayBuffer(1, 16, 2, 1, 2)
    for t in range(4):
        last = float(t == 3)
        buf.add_batch(np.zeros((1, 2)), np.zeros((1, 1)), [-1.0], np.array([last]), np.array([0.0]),
                      np.zeros((1, 2)), np.array([last]))
    assert buf.ends[0, :4].tolist() == [False, False, False, True] and buf.success[0, :4].all()


# ------------------------------------------------------------------------------------- start range edges
def test_exactly_one_stored_chunk_is_sampled():
    """total = H: the single start 0 is a sample, also for the success sampler (one tagged start)."""
    buf = ReplayBuffer(1, 16, 2, 1, 3)
    run(buf, 3, {2: ("term", True)})
    assert buf.can_sample() and buf.can_sample(success=True)
    assert buf.sample(20).obs[:, 0].tolist() == [0.0] * 20
    assert buf.sample(20, success=True).obs[:, 0].tolist() == [0.0] * 20


def test_every_start_is_drawn_including_the_last():
    buf = ReplayBuffer(1, 16, 2, 1, 3)
    run(buf, 6)  # starts 0..3
    assert set(buf.sample(400).obs[:, 0].tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_a_success_shorter_than_a_chunk_is_not_yet_sampleable():
    """A 2-step successful episode with H = 3: tagged, but no whole chunk is stored yet."""
    buf = ReplayBuffer(1, 16, 2, 1, 3)
    run(buf, 2, {1: ("term", True)})
    assert buf.num_success_episodes == 1 and buf.success[0, :2].all()
    assert not buf.can_sample() and not buf.can_sample(success=True)
    with pytest.raises(RuntimeError, match=r"^replay buffer has no successful chunk to sample yet$"):
        buf.sample(4, success=True)
    with pytest.raises(RuntimeError, match=r"^replay buffer has no chunk to sample yet$"):
        buf.sample(4)


def test_no_success_yet_replay_sampleable_but_success_sampler_refuses():
    buf = ReplayBuffer(1, 16, 2, 1, 2)
    run(buf, 6, {2: ("term", False)})
    assert buf.can_sample() and not buf.can_sample(success=True)
    with pytest.raises(RuntimeError, match=r"^replay buffer has no successful chunk to sample yet$"):
        buf.sample(4, success=True)


def test_wrapped_ring_success_starts_and_tags():
    """C = 8, H = 2, one env. Episode A = steps 0-4 fails, B = 5-9 succeeds, C = 10-12 runs on. After 13 steps
    the ring holds steps 5..12; tagging B must not touch slot (10 % 8) = step 10, written after B's end and
    reset then, nor step 5+8 = 13's slot; sampleable success starts: 5..9 (step 9's chunk runs into 10)."""
    buf = ReplayBuffer(1, 8, 2, 1, 2)
    run(buf, 13, {4: ("trunc", False), 9: ("term", True)})
    slots = {t % 8: t for t in range(5, 13)}
    tagged = sorted(slots[s] for s in np.flatnonzero(buf.success[0]))
    assert tagged == [5, 6, 7, 8, 9]
    env, starts = buf._success_starts()
    assert env.tolist() == [0] * 5 and starts.tolist() == [5, 6, 7, 8, 9]
    assert set(buf.sample(300, success=True).obs[:, 0].tolist()) == {5.0, 6.0, 7.0, 8.0, 9.0}
    assert set(buf.sample(300).obs[:, 0].tolist()) == set(map(float, range(5, 12)))  # starts 5..11


def test_a_success_right_after_wrapping_leaves_the_oldest_slot_alone():
    """C = 6, H = 2: a failure over steps 0-4, then a one-step-shorter success 5-9. At the success's end the ring
    holds steps 4..9; slot of step 10 (= step 4's slot) must stay untagged: it belongs to the failure."""
    buf = ReplayBuffer(1, 6, 2, 1, 2)
    run(buf, 10, {4: ("trunc", False), 9: ("term", True)})
    assert buf.success[0, 4 % 6] == np.False_
    assert sorted(t for t in range(4, 10) if buf.success[0, t % 6]) == [5, 6, 7, 8, 9]
    assert buf._success_starts()[1].tolist() == [5, 6, 7, 8]  # step 9's chunk is not whole yet


# ------------------------------------------------------------------------------------- gather / episodes
def test_gather_ends_flags_only_the_valid_end():
    buf = ReplayBuffer(1, 16, 2, 1, 3)
    run(buf, 8, {1: ("trunc", False)})
    b = buf.gather(np.array([0, 0]), np.array([0, 2]))
    assert b.ends.tolist() == [[0, 1, 0], [0, 0, 0]] and b.valid.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert b.terminals.tolist() == [[0, 0, 0], [0, 0, 0]]


def test_finished_episodes_ties_go_to_the_lower_env_and_n_counts():
    """Two envs end an episode at the same step; env 1's episode started earlier (env 0 also ended at step 1)."""
    buf = ReplayBuffer(2, 40, 2, 1, 2)
    for t in range(6):
        ends = np.array([t in (1, 5), t == 5])
        buf.add_batch(np.zeros((2, 2)), np.zeros((2, 1)), -np.ones(2), ends, np.zeros(2, bool), np.zeros((2, 2)),
                      np.zeros(2, bool))
    assert buf.finished_episodes(3) == [(0, 0, 2), (0, 2, 6), (1, 0, 6)]
    assert buf.finished_episodes(1) == [(1, 0, 6)]
    assert buf.finished_episodes(0) == []


# ------------------------------------------------------------------------------------- persistence
def rewrite(path, meta_edit=None, arrays_edit=None) -> None:
    """Rewrite a saved buffer file with its metadata / arrays edited (a damaged or an earlier-version file)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()["flowft_buffer"])
    arrays = load_file(str(path))
    (meta_edit or (lambda m: None))(meta)
    (arrays_edit or (lambda a: None))(arrays)
    save_file(arrays, str(path), metadata={"flowft_buffer": json.dumps(meta)})


def saved(tmp_path, T=3, ends=None, N=1):
    buf = ReplayBuffer(N, 8 * N, 2, 1, 2, seed=5)  # C = 8
    run(buf, T, ends)
    buf.save(tmp_path / "b.safetensors")
    return buf, tmp_path / "b.safetensors"


def assert_same_buffer(a: ReplayBuffer, b: ReplayBuffer) -> None:
    for k in ("obs", "next_obs", "actions", "rewards", "terminated", "ends", "success", "ep_start"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert (a.total, a.num_success_episodes) == (b.total, b.num_success_episodes)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


@pytest.mark.parametrize("T", [0, 3])  # an empty buffer; one without a success (both counts 0 are valid)
def test_round_trip_of_an_empty_and_a_success_free_buffer(tmp_path, T):
    buf, path = saved(tmp_path, T)
    assert buf.meta()["rows"] == T and buf.num_success_episodes == 0
    other = ReplayBuffer(1, 8, 2, 1, 2, seed=9)
    other.load(path)
    assert_same_buffer(other, buf)


def test_a_file_of_an_earlier_version_holding_all_slots_loads(tmp_path):
    buf, path = saved(tmp_path, 3, {1: ("term", True)})
    rewrite(path, lambda m: m.pop("rows"), _pad_all)
    other = ReplayBuffer(1, 8, 2, 1, 2)
    other.load(path)
    assert_same_buffer(other, buf)


def _pad_all(arrays):
    """Zero-pad every [N=1, rows] array to all C = 8 slots (what files of earlier versions held)."""
    for k, v in list(arrays.items()):
        if k != "ep_start":
            arrays[k] = np.concatenate([v, np.zeros((1, 5) + v.shape[2:], v.dtype)], 1)


@pytest.mark.parametrize("meta_edit, arrays_edit, message", [
    (lambda m: m.update(total=-1), None, r"metadata 'total' is -1, not a step count$"),
    (lambda m: m.update(total="3"), None, r"metadata 'total' is '3', not a step count$"),
    (lambda m: m.update(num_success_episodes=-1), None, r"metadata 'num_success_episodes' is -1$"),
    (None, lambda a: a.pop("rewards"), r"'rewards' holds None \[envs, slots\], its metadata \(total 3\) says "
                                       r"\(1, 3\) \(damaged or edited file\)$"),
    (None, _pad_all, r"'obs' holds \(1, 8\) \[envs, slots\]"),  # all C slots, but a compact file's metadata
    (None, lambda a: a.pop("ep_start"), r"episode starts do not fit total 3 \(damaged\)$"),
    (None, lambda a: a.update(ep_start=np.zeros(2, np.int64)), r"episode starts do not fit total 3 \(damaged\)$"),
    (None, lambda a: a.update(ep_start=np.array([4])), r"episode starts do not fit total 3 \(damaged\)$"),
    (lambda m: m.pop("rng"), None, r"metadata lacks the buffer shapes \(damaged file\)$"),
    (lambda m: [m.pop(k) for k in list(m) if k not in {"N", "C", "H", "obs_dim", "act_dim", "rng"}], None,
     r"metadata 'total' is None, not a step count$"),  # the shapes alone pass the first check
    (lambda m: m.update(rng={"bit_generator": "nope"}), None, r"unreadable sampler RNG state \("),
])
def test_a_damaged_buffer_file_is_refused_naming_the_file(tmp_path, meta_edit, arrays_edit, message):
    from flowft.errors import CheckpointError

    _, path = saved(tmp_path, 3)
    rewrite(path, meta_edit, arrays_edit)
    with pytest.raises(CheckpointError, match=rf"^replay buffer file {re.escape(str(path))}: {message}"):
        ReplayBuffer(1, 8, 2, 1, 2).load(path)


def test_an_unreadable_buffer_file_is_one_line_naming_the_error(tmp_path):
    from flowft.errors import CheckpointError

    bad = tmp_path / "b.safetensors"
    bad.write_bytes(b"x" * 300)
    with pytest.raises(CheckpointError, match=rf"^replay buffer file {re.escape(str(bad))}: unreadable "
                                              r"\(SafetensorError: Error while deserializing header: header too large\)$"):
        ReplayBuffer(1, 8, 2, 1, 2).load(bad)
    missing = tmp_path / ("m" * 200 + ".safetensors")  # the error quotes the long path: cut to 160 characters
    with pytest.raises(CheckpointError) as err:
        ReplayBuffer(1, 8, 2, 1, 2).load(missing)
    kind, text = str(err.value).split(": unreadable (", 1)[1].split(": ", 1)
    assert kind in ("SafetensorError", "FileNotFoundError") and len(text) == 161 and text.endswith(")")
