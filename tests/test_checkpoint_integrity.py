"""Checkpoints that are never poisoned or lost (issue 19, items 2, 5, 6 and 10), on the toy task.

Each test damages a real checkpoint the way a crash, a diverged run, a disk or a person would, and checks the known
answer: which checkpoint the run resumes from or evaluates, and that the damaged file is named.
"""

import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_np, save_file as save_np
from safetensors.torch import load_file, save_file

from flowft.algos.base import DivergenceError
from flowft.bench.runner import checkpoint_step
from flowft.data.buffer import ReplayBuffer
from flowft.deploy import load_policy
from flowft.errors import CheckpointError
from flowft.train.checkpointing import rotate_checkpoints
from flowft.train.loop import Trainer
from flowft.train.runguard import has_checkpoint
from flowft.utils.checkpoint import NoCheckpointError, latest_checkpoint
from flowft.utils.manifest import MANIFEST, CheckpointWarning, check_dir, write_manifest
from helpers import final_weights, make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


@pytest.fixture(scope="module")
def trained(bc, tmp_path_factory):
    """A finished toy run with checkpoints at 320 and 640 (keep 2); tests damage copies of it."""
    cfg = tiny_train_config(bc, tmp_path_factory.mktemp("runs"), run_name="base")
    t = Trainer(cfg)
    t.run()
    return cfg, t.run_dir


@pytest.fixture
def run(trained, tmp_path):
    cfg, src = trained
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return cfg, dst


def ckpt(run_dir, step):
    return run_dir / "checkpoints" / f"{step:010d}"


def flip_byte(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def reseal(directory):
    """What a copy or an edit by hand followed by a re-save would leave: a manifest that matches the files."""
    (directory / MANIFEST).unlink()
    write_manifest(directory)


def resumed(cfg, run_dir):
    """A Trainer resumed from `run_dir` with a budget beyond its checkpoints (a finished run loads nothing), closed
    again: the tests look at what resuming found, loaded and settled."""
    t = Trainer(replace(cfg, run=replace(cfg.run, env_steps=960)), run_dir=run_dir, resume=True)
    t.close()
    return t


def lookup(run_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = latest_checkpoint(run_dir)
    return path, [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]


# ------------------------------------------------------------------------------- 1. never write a poisoned checkpoint
def test_divergence_keeps_the_last_finite_verified_checkpoint(bc, tmp_path, capsys):
    """The issue's case: lr 1e7, 2 updates per env step from step 160. Updates 1-2 make the critic and its Adam
    moments NaN while their losses are still finite; the checkpoint at 160 was written from them and kept."""
    cfg = tiny_train_config(bc, tmp_path, env_steps=320, ckpt_every=80, utd=0.5, run_name="div")
    cfg = replace(cfg, algo=replace(cfg.algo, actor_lr=1e7, critic_lr=1e7, lr_warmup=1))
    t = Trainer(cfg)
    with pytest.raises(DivergenceError):
        t.run()
    kept = latest_checkpoint(t.run_dir)
    assert kept.name == "0000000080"  # 160 was refused: its weights were not finite
    assert check_dir(kept).verified
    for f in ("model.safetensors", "training_state/optim.safetensors"):
        assert all(torch.isfinite(v).all() for v in load_file(str(kept / f)).values()), f
    assert sorted(p.name for p in (t.run_dir / "checkpoints").iterdir()) == ["0000000080", "last.txt"]
    err = capsys.readouterr().err
    assert "env step 80" in err and "finite, weights at most 1.00x their start RMS, manifest verified" in err
    assert "env step 80" in (t.run_dir / "DIVERGED.txt").read_text()


def test_finite_but_exploded_weights_are_refused_like_nonfinite_ones(bc, tmp_path, capsys):
    """The issue's other case: lr 10 keeps every tensor finite (the run used to finish with exit 0) but one Adam step
    moves each weight by ~10 where the BC actor's RMS is ~0.1 (the actor grew ~97x, the critic ~110x, by env step 160):
    that checkpoint is refused and the run stops, keeping the one before, whose weights are at their start."""
    cfg = tiny_train_config(bc, tmp_path, env_steps=320, ckpt_every=80, utd=0.5, run_name="big")
    cfg = replace(cfg, algo=replace(cfg.algo, actor_lr=10.0, critic_lr=10.0, lr_warmup=1))
    t = Trainer(cfg)
    with pytest.raises(DivergenceError, match=r"grew past --run.max-weight-growth 20x .*actor \d"):
        t.run()
    kept = latest_checkpoint(t.run_dir)
    assert kept.name == "0000000080"  # updates start at 160, before that step's checkpoint
    err = capsys.readouterr().err
    assert "env step 80" in err and "weights at most 1.00x their start RMS" in err
    # the same run with the guard off writes the wrecked checkpoint: the bound, not something else, refused it
    off = Trainer(replace(cfg, run=replace(cfg.run, run_name="off", max_weight_growth=0.0)))
    off.run()
    actor = [v for k, v in final_weights(off.run_dir).items() if k.startswith("actor.net.")]
    assert max(float(v.abs().max()) for v in actor) > 100


def test_save_refuses_nonfinite_adam_moments_and_target_nets(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, env_steps=320, run_name="nan")
    t = Trainer(cfg, run_dir=None)
    try:
        t.save()  # step 0: finite, written
        for poison in ("optim", "target"):
            if poison == "optim":
                p = next(t.algo.critic.parameters())
                t.algo.critic_opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.full_like(p, float("nan")),
                                              "exp_avg_sq": torch.zeros_like(p)}
            else:
                t.algo.critic_opt.state.clear()
                with torch.no_grad():
                    next(t.algo.critic_target.parameters()).fill_(float("inf"))
            t.env_steps = 40
            with pytest.raises(DivergenceError, match="non-finite"):
                t.save()
            assert sorted(p.name for p in (t.run_dir / "checkpoints").iterdir()) == ["0000000000", "last.txt"]
    finally:
        t.close()


def _poisoned_legacy_checkpoint(run_dir):
    """A checkpoint as an earlier flowft wrote it after a divergence: NaN critic weights, no manifest."""
    c = ckpt(run_dir, 640)
    tensors = load_file(str(c / "model.safetensors"))
    name = next(k for k in tensors if k.startswith("critic."))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(c / "model.safetensors"))
    (c / MANIFEST).unlink(missing_ok=True)
    cfg = (c / "config.json").read_text().replace('"format_version": 2', '"format_version": 1')
    (c / "config.json").write_text(cfg)
    return c


def test_load_policy_and_eval_refuse_nonfinite_weights(run):
    _, run_dir = run
    c = _poisoned_legacy_checkpoint(run_dir)
    with pytest.warns(CheckpointWarning, match="unverified"):
        with pytest.raises(CheckpointError, match=f"{c / 'model.safetensors'}.*non-finite"):
            load_policy(run_dir)
    out = subprocess.run([sys.executable, "-m", "flowft", "eval", str(c), "--episodes", "2", "--envs", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert str(c / "model.safetensors") in out.stderr and "non-finite" in out.stderr


# ------------------------------------------------------------------------------------- 2. manifest and fallback
@pytest.mark.parametrize("damage", ["flip model", "truncate optim", "delete state", "edit buffer total",
                                    "delete manifest"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning_naming_the_file(run, damage):
    _, run_dir = run
    c = ckpt(run_dir, 640)
    if damage == "flip model":
        bad = c / "model.safetensors"
        flip_byte(bad)
    elif damage == "truncate optim":
        bad = c / "training_state" / "optim.safetensors"
        bad.write_bytes(bad.read_bytes()[:-100])
    elif damage == "delete state":
        bad = c / "training_state" / "state.json"
        bad.unlink()
    elif damage == "edit buffer total":
        bad = c / "buffer.safetensors"
        _edit_buffer_total(bad, 1)
    else:
        bad = c / MANIFEST
        bad.unlink()
    path, warned = lookup(run_dir)
    assert path == ckpt(run_dir, 320)
    assert any(str(bad) in w for w in warned), warned
    with pytest.raises(CheckpointError, match=str(bad)):  # a checkpoint named explicitly is refused, not replaced
        load_policy(c)


def _edit_buffer_total(path, total):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    arrays = load_np(str(path))
    meta["flowft_buffer"] = meta["flowft_buffer"].replace('"total": 160', f'"total": {total}')
    save_np(arrays, str(path), metadata=meta)


def test_edited_buffer_total_is_refused_by_the_buffer_itself(run):
    """Without any manifest (a hand-made or old file), metadata that does not describe the arrays is refused."""
    _, run_dir = run
    path = ckpt(run_dir, 640) / "buffer.safetensors"
    _edit_buffer_total(path, 1)
    with pytest.raises(CheckpointError, match=f"{path}.*total 1"):
        ReplayBuffer(4, 20_000, 6, 2, 4).load(path)


def test_resume_falls_back_past_a_damaged_checkpoint_and_finishes_identically(run):
    cfg, run_dir = run
    reference = load_file(str(ckpt(run_dir, 640) / "model.safetensors"))
    flip_byte(ckpt(run_dir, 640) / "buffer.safetensors", 0.9)
    with pytest.warns(CheckpointWarning, match="buffer.safetensors"):
        t = Trainer(cfg, run_dir=run_dir, resume=True)
    assert t.env_steps == 320
    t.run()
    again = load_file(str(ckpt(run_dir, 640) / "model.safetensors"))
    assert all(torch.equal(reference[k], again[k]) for k in reference)  # nothing lost: the same weights again
    assert check_dir(ckpt(run_dir, 640)).verified


def test_no_usable_checkpoint_is_one_clear_error(run):
    _, run_dir = run
    for step in (320, 640):
        flip_byte(ckpt(run_dir, step) / "model.safetensors")
    with pytest.raises(NoCheckpointError, match="no usable checkpoint.*0000000640.*0000000320"):
        latest_checkpoint(run_dir)


def test_state_json_disagreeing_with_its_dir_is_damage_and_rotation_keeps_the_good_checkpoint(run):
    """640's state.json says 960 (a dir copied or edited by hand, manifest re-made). Before: resume started at
    960, wrote 960 and rotation (newest 2 by name) deleted the good 320."""
    cfg, run_dir = run
    c = ckpt(run_dir, 640)
    state = c / "training_state" / "state.json"
    state.write_text(state.read_text().replace('"env_steps": 640', '"env_steps": 960'))
    reseal(c)
    assert "env_steps 960 disagrees" in check_dir(c).problem
    with pytest.warns(CheckpointWarning, match="state.json"):
        t = Trainer(replace(cfg, run=replace(cfg.run, env_steps=960)), run_dir=run_dir, resume=True)
    assert t.env_steps == 320
    t.run()
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir())
    assert names == ["0000000640", "0000000960"]  # 320 went only once two newer good ones existed
    for step in (640, 960):
        assert check_dir(ckpt(run_dir, step)).verified


def test_rotation_never_counts_a_damaged_checkpoint_as_kept(run):
    _, run_dir = run
    root = run_dir / "checkpoints"
    shutil.copytree(ckpt(run_dir, 640), ckpt(run_dir, 960))  # a dir whose state.json says 640: inconsistent
    shutil.copytree(ckpt(run_dir, 640), ckpt(run_dir, 1280))  # beyond the current step: left alone
    assert rotate_checkpoints(root, 960, keep=2) == []  # 640 and 320 are the two usable ones: both stay
    assert rotate_checkpoints(root, 960, keep=1) == [ckpt(run_dir, 320)]
    assert ckpt(run_dir, 640).exists() and ckpt(run_dir, 960).exists() and ckpt(run_dir, 1280).exists()


# ------------------------------------------------------------------------------------------------- 3. lookup
@pytest.mark.parametrize("pointer", [None, "", "garbage\x00\n", "0000000999", "../../etc"])
def test_lookup_does_not_trust_last_txt(run, pointer):
    _, run_dir = run
    last = run_dir / "checkpoints" / "last.txt"
    if pointer is None:
        last.unlink()
    else:
        last.write_text(pointer)
    assert lookup(run_dir) == (ckpt(run_dir, 640), [])
    load_policy(run_dir)


def test_crash_between_the_two_renames_of_commit_dir(run):
    """A re-save at 640 killed after `640 -> 640.old` and before `640.tmp -> 640`: both copies are complete."""
    cfg, run_dir = run
    c = ckpt(run_dir, 640)
    os.replace(c, c.with_name(c.name + ".old"))
    shutil.copytree(c.with_name(c.name + ".old"), c.with_name(c.name + ".tmp"))
    path, warned = lookup(run_dir)
    assert path.name == "0000000640.old" and not warned  # read-only: eval may run while a trainer writes
    assert checkpoint_step(run_dir) == 640  # the bench runner reads the step of a `.old` copy too
    load_policy(run_dir)
    t = resumed(cfg, run_dir)  # the resuming process settles the copies
    assert t.env_steps == 640
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["0000000320", "0000000640", "last.txt"]
    assert check_dir(c).verified


def test_resuming_a_finished_run_settles_copies_a_crash_left(run, capfd):
    """A finished run never saves again, so its resume is where the 62 MB `.tmp`/`.old` copies get cleaned up."""
    cfg, run_dir = run
    c = ckpt(run_dir, 640)
    shutil.copytree(c, c.with_name(c.name + ".old"))
    shutil.copytree(c, c.with_name(c.name + ".tmp"))
    t = Trainer(cfg, run_dir=run_dir, resume=True)
    t.close()
    assert t.finished
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["0000000320", "0000000640", "last.txt"]
    assert "removed stale" in capfd.readouterr().err


@pytest.mark.parametrize("pointer, dirs, expected", [
    ("0000000160", (), True),  # a checkpoint existed and is lost: resume must stop, not start over
    ("", (), False), ("garbage\n", (), False), ("\x00\x00", (), False),
    ("", ("0000000160.tmp",), False),  # a half-written first checkpoint is not one
    ("", ("0000000160.old",), True), (None, ("0000000160",), True)])
def test_has_checkpoint_trusts_step_dirs_and_a_pointer_to_a_step_only(tmp_path, pointer, dirs, expected):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for d in dirs:
        (ckpts / d).mkdir()
    if pointer is not None:
        (ckpts / "last.txt").write_text(pointer)
    assert has_checkpoint(tmp_path) is expected


def test_stale_copies_are_removed_but_an_only_good_copy_is_restored(run):
    """At start-up: 640 missing with a complete 640.old and a half-written 640.tmp, plus a half-written 960.tmp."""
    cfg, run_dir = run
    c = ckpt(run_dir, 640)
    os.replace(c, c.with_name(c.name + ".old"))
    for partial in (c.with_name(c.name + ".tmp"), ckpt(run_dir, 960).with_name("0000000960.tmp")):
        (partial / "training_state").mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    t = resumed(cfg, run_dir)
    assert t.env_steps == 640
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["0000000320", "0000000640", "last.txt"]
    assert (run_dir / "checkpoints" / "last.txt").read_text() == "0000000640"


def test_checkpoints_without_manifest_still_load_with_one_warning(run):
    cfg, run_dir = run
    for step in (320, 640):
        c = ckpt(run_dir, step)
        (c / MANIFEST).unlink(missing_ok=True)
        (c / "config.json").write_text((c / "config.json").read_text().replace('"format_version": 2',
                                                                                '"format_version": 1'))
    path, warned = lookup(run_dir)
    assert path == ckpt(run_dir, 640) and len(warned) == 1 and "unverified" in warned[0]
    t = resumed(cfg, run_dir)
    assert t.env_steps == 640


# ----------------------------------------------------------------------------------------- 4. compact buffers
def _filled(capacity, steps, N=4):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(N, capacity, 6, 2, 4, seed=3)
    for t in range(steps):
        d = np.array([(t + n) % 7 == 6 for n in range(N)])
        buf.add_batch(rng.standard_normal((N, 6)), rng.uniform(-1, 1, (N, 2)), rng.standard_normal(N), d & (t % 2 == 0),
                      d & (t % 2 == 1), rng.standard_normal((N, 6)), d & (t % 3 == 0))
    return buf


def test_buffer_file_grows_with_transitions_not_capacity(tmp_path):
    sizes = {}
    for capacity, steps in ((4_000, 50), (400_000, 50), (400_000, 100)):
        _filled(capacity, steps).save(tmp_path / "b.safetensors")
        sizes[capacity, steps] = (tmp_path / "b.safetensors").stat().st_size
    assert sizes[400_000, 50] < 1.05 * sizes[4_000, 50]  # 100x the capacity: the same file
    assert 1.8 < sizes[400_000, 100] / sizes[400_000, 50] < 2.1  # twice the transitions: twice the file
    assert sizes[400_000, 50] < 200 * 4 * 60  # ~ 50 steps x 4 envs x (2 obs of 6 + 2 actions + flags) x 4 B


@pytest.mark.parametrize("steps", [0, 5, 20, 53])  # empty, part-filled, exactly full, wrapped (C = 20 per env)
def test_compact_buffer_round_trip_is_exact_through_the_ring_wrap(tmp_path, steps):
    buf = _filled(80, steps)
    buf.save(tmp_path / "b.safetensors")
    other = ReplayBuffer(4, 80, 6, 2, 4, seed=99)
    other.load(tmp_path / "b.safetensors")
    for k in ("obs", "actions", "rewards", "terminated", "ends", "next_obs", "success", "ep_start"):
        assert np.array_equal(getattr(buf, k), getattr(other, k)), k
    assert (other.total, other.num_success_episodes) == (buf.total, buf.num_success_episodes)
    if buf.can_sample():
        assert torch.equal(buf.sample(64).obs, other.sample(64).obs)  # RNG restored too


def test_buffer_file_of_an_earlier_version_still_loads(tmp_path):
    """Earlier files held all C slots per env."""
    buf = _filled(80, 7)
    arrays = {k: getattr(buf, k) for k in ("obs", "actions", "rewards", "terminated", "ends", "next_obs", "success")}
    meta = {k: v for k, v in buf.meta().items() if k != "rows"}

    save_np({**arrays, "ep_start": buf.ep_start}, str(tmp_path / "old.safetensors"),
            metadata={"flowft_buffer": json.dumps(meta)})
    other = ReplayBuffer(4, 80, 6, 2, 4)
    other.load(tmp_path / "old.safetensors")
    assert other.total == 7 and np.array_equal(other.obs, buf.obs)


def test_a_final_save_that_diverges_is_recorded_like_any_other(bc, tmp_path, monkeypatch):
    """The checkpoint at the budget is written after the loop: a non-finite state there must also leave DIVERGED.txt
    and keep the last finite checkpoint (it used to escape the divergence guard)."""
    cfg = tiny_train_config(bc, tmp_path, env_steps=320, ckpt_every=160, run_name="final")
    save = Trainer.save

    def poisoned_at_budget(self):
        if self.env_steps >= self.cfg.run.env_steps:
            with torch.no_grad():
                next(self.algo.actor.parameters()).fill_(float("nan"))
        return save(self)

    monkeypatch.setattr(Trainer, "save", poisoned_at_budget)
    t = Trainer(cfg)
    with pytest.raises(DivergenceError):
        t.run()
    assert latest_checkpoint(t.run_dir).name == "0000000160"
    assert "at env step 320" in (t.run_dir / "DIVERGED.txt").read_text()


def test_a_bc_checkpoint_that_lost_its_manifest_is_damaged_not_unverified(bc, tmp_path):
    """BC checkpoints carry format_version 2 like training checkpoints, so a deleted manifest reads as damage."""
    from flowft.deploy import resolve_checkpoint

    copy = tmp_path / "bc"
    shutil.copytree(bc, copy)
    assert resolve_checkpoint(copy) == copy  # intact: verified
    (copy / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        resolve_checkpoint(copy)


def _edit_algo_config(run_dir, edit, run_config: bool = True):
    """Apply `edit` to the algorithm config in every checkpoint's config.json (resealed) and, with `run_config`, in
    the run's."""
    for f in [*([run_dir / "config.json"] if run_config else []), *run_dir.glob("checkpoints/0*/config.json")]:
        data = json.loads(f.read_text())
        edit(data["algo"])
        f.write_text(json.dumps(data))
        if f.parent.name != run_dir.name:
            reseal(f.parent)


def test_a_run_from_before_a_field_existed_resumes_with_its_default(run):
    """A run written by an earlier flowft has no entry for fields added since (here actor_every and lr_restart):
    resuming it with today's flowft takes their defaults, which is what the run did, instead of refusing."""
    cfg, run_dir = run
    _edit_algo_config(run_dir, lambda a: [a.pop("actor_every"), a.pop("lr_restart")])
    from flowft.cli import _run_config

    loaded = _run_config(run_dir)
    assert (loaded.algo.actor_every, loaded.algo.lr_restart) == (1, True)
    t = Trainer(replace(loaded, run=replace(loaded.run, env_steps=960)), run_dir=run_dir, resume=True)
    t.close()
    assert t.env_steps == 640


@pytest.mark.parametrize("edit, field", [(lambda a: a.update(lr_restart=False), "lr_restart"),
                                         (lambda a: a.update(gone_field=3), "gone_field")])
def test_a_checkpoint_of_another_algorithm_config_is_still_refused(run, edit, field):
    """Only missing fields default: a checkpoint whose settings differ, or that this flowft cannot read (an unknown
    field), is refused in one line naming the field."""
    from flowft.utils.checkpoint import IncompatibleCheckpointError

    cfg, run_dir = run
    _edit_algo_config(run_dir, edit, run_config=False)
    with pytest.raises(IncompatibleCheckpointError, match=f"algorithm config differs in .*{field}"):
        resumed(cfg, run_dir)
