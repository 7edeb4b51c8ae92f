"""Bad input gets one clear error naming the problem, and never overwrites good data."""

import json
import shutil
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from flowft.algos.base import DivergenceError
from flowft.algos.bc import pretrain
from flowft.data.readers.hdf5 import read_demos, write_demos
from flowft.presets import bc_preset, train_preset
from flowft.registry import get_task
from flowft.train.collector import ChunkCollector
from flowft.envs.make import make_vec_env
from flowft.train.loop import Trainer
from flowft.utils.checkpoint import latest_checkpoint
from flowft.utils.manifest import write_manifest
from helpers import make_bc_checkpoint, tiny_train_config


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc_err"), steps=50)


def toy_file(path, n=3):
    task = get_task("toy")
    write_demos(path, task.generate(n, 0, 0.1), task.meta())
    return path


def test_missing_dataset_key_is_named(tmp_path):
    p = toy_file(tmp_path / "d.hdf5")
    with h5py.File(p, "a") as f:
        del f["data/demo_1/actions"]
    with pytest.raises(ValueError, match=r"data/demo_1 is missing key 'actions'"):
        read_demos(p)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['robot0_eef_pos'\]"):
        read_demos(toy_file(tmp_path / "e.hdf5"), obs_keys=["robot0_eef_pos"])


def test_nan_in_dataset_is_named(tmp_path):
    p = toy_file(tmp_path / "d.hdf5")
    with h5py.File(p, "a") as f:
        f["data/demo_2/obs/obs"][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"data/demo_2/obs contains NaN"):
        read_demos(p)


def test_wrong_dims_between_demo_file_and_task(tmp_path):
    eps = get_task("toy").generate(3, 0, 0.1)
    for e in eps:
        e["actions"] = np.concatenate([e["actions"], e["actions"]], 1)  # Da = 4 instead of 2
    write_demos(tmp_path / "bad.hdf5", eps, {"obs_keys": ["obs"]})
    cfg = bc_preset("toy", "tiny", str(tmp_path / "bad.hdf5"), steps=2, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"obs/action dims 6/4 do not match task 'toy' \(6/2\)"):
        pretrain(cfg)


def test_write_demos_is_atomic_and_never_clobbers_on_failure(tmp_path):
    p = toy_file(tmp_path / "good.hdf5")
    before = p.read_bytes()
    with pytest.raises(Exception):
        write_demos(p, [{"obs": {"obs": np.zeros((2, 6))}, "actions": None, "rewards": [0, 0],
                         "dones": [0, 1], "success": True}], {})
    assert p.read_bytes() == before


def test_bc_checkpoint_for_another_task_or_chunk_size(bc, tmp_path):
    bad = tmp_path / "bc_bad"
    shutil.copytree(bc, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["dims"]["chunk_len"] = 8
    (bad / "config.json").write_text(json.dumps(cfg))
    write_manifest(bad)  # a genuine checkpoint of another chunk size, not a damaged copy
    with pytest.raises(ValueError, match="chunk size"):
        Trainer(tiny_train_config(bad, tmp_path))


def test_bc_checkpoint_with_another_architecture(bc, tmp_path):
    cfg = train_preset("ogpo-plus-ca", "toy", "mid", bc_checkpoint=str(bc), out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"architecture differs in \['hidden'\]"):
        Trainer(cfg)


def test_bc_checkpoint_with_another_time_embedding(bc, tmp_path):
    """The authors' time embedding adds parameters: a mismatch is one line naming the field, not a state-dict error."""
    cfg = train_preset("ogpo-plus-ca", "toy", "tiny", bc_checkpoint=str(bc), out_dir=str(tmp_path))
    cfg = replace(cfg, algo=replace(cfg.algo, policy=replace(cfg.algo.policy, time_embed="mlp")))
    with pytest.raises(ValueError, match=r"architecture differs in \['time_embed'\] \(\['scaled'\] vs \['mlp'\]\)"):
        Trainer(cfg)


def test_train_without_bc_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="bc-checkpoint is required"):
        Trainer(train_preset("ogpo", "toy", "tiny", out_dir=str(tmp_path)))


def test_policy_returning_wrong_chunk_shape():
    venv = make_vec_env(get_task("toy"), 2)
    col = ChunkCollector(venv, 4, torch.device("cpu"))
    col.start(venv.reset(seed=0)[0])
    with pytest.raises(ValueError, match=r"chunk_len=4, act_dim=2"):
        col.step(lambda o: torch.zeros(o.shape[0], 5, 2))


def test_deployed_policy_rejects_wrong_obs_dim(bc):
    from flowft import load_policy

    pol = load_policy(bc)
    assert pol.act(np.zeros(6)).shape == (4, 2)
    with pytest.raises(ValueError, match="obs_dim=6"):
        pol.act(np.zeros(5))


def test_divergence_stops_run_and_keeps_last_good_checkpoint(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, env_steps=960)
    t = Trainer(replace(cfg, run=replace(cfg.run, run_name="div")))
    real_update = t.algo.update

    def exploding(buffer):
        stats = real_update(buffer)
        if t.env_steps > 400:  # after the checkpoint at 320
            with torch.no_grad():
                next(t.algo.critic.parameters()).fill_(float("nan"))
            stats = real_update(buffer)
        return stats

    t.algo.update = exploding
    with pytest.raises(DivergenceError, match="non-finite"):
        t.run()
    good = latest_checkpoint(t.run_dir)
    assert good.name == "0000000320"
    assert (t.run_dir / "DIVERGED.txt").exists()
    from safetensors.torch import load_file

    assert all(torch.isfinite(v).all() for v in load_file(str(good / "model.safetensors")).values())
