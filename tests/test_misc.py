"""Normaliser round trip, BC clip trigger, success tagging through the real collector, toy env semantics."""

import numpy as np
import pytest
import torch

from flowft.algos.bc import pretrain
from flowft.data.hdf5 import read_demos, write_demos
from flowft.envs.toy import ToyReachEnv
from flowft.policies.normalizer import Normalizer
from flowft.presets import bc_preset
from flowft.registry import get_task


def test_normalizer_round_trip_and_ranges():
    x = torch.randn(500, 3) * torch.tensor([5.0, 0.1, 2.0]) + torch.tensor([1.0, -3.0, 0.0])
    z = Normalizer(3)
    z.fit_zscore(x)
    assert torch.allclose(z.inverse(z(x)), x, atol=1e-5)
    assert torch.allclose(z(x).mean(0), torch.zeros(3), atol=1e-5)
    m = Normalizer(3)
    m.fit_minmax(x)
    y = m(x)
    assert torch.allclose(y.min(0).values, -torch.ones(3), atol=1e-5)
    assert torch.allclose(y.max(0).values, torch.ones(3), atol=1e-5)
    assert torch.allclose(m.inverse(y), x, atol=1e-4)
    const = Normalizer(1)
    const.fit_minmax(torch.ones(10, 1))  # zero range keeps scale 1 instead of dividing by 0
    assert torch.isfinite(const(torch.ones(2, 1))).all()


def test_normalizer_travels_in_state_dict():
    z = Normalizer(2)
    z.fit_zscore(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    other = Normalizer(2)
    other.load_state_dict(z.state_dict())
    assert torch.equal(other.shift, z.shift) and torch.equal(other.scale, z.scale)


def test_toy_env_reward_termination_and_expert():
    env = ToyReachEnv()
    obs, _ = env.reset(seed=3)
    obs2, r, term, trunc, info = env.step(np.zeros(2))
    assert r == -1.0 and not term and not trunc and info["success"] is False
    eps = get_task("toy").generate(20, 1, 0.1)
    assert all(e["success"] for e in eps)
    last = eps[0]
    assert last["rewards"][-1] == 0.0 and last["dones"][-1] and (last["rewards"][:-1] == -1).all()
    env.reset(seed=0)
    for _ in range(12):
        _, r, term, trunc, _ = env.step(np.array([0.0, -1.0]))  # run away from both goals
    assert trunc and not term


def test_toy_env_state_round_trip():
    a, b = ToyReachEnv(), ToyReachEnv()
    a.reset(seed=1)
    a.step(np.ones(2))
    b.reset(seed=2)
    b.set_state(a.get_state())
    assert np.array_equal(a.step(np.ones(2) * 0.3)[0], b.step(np.ones(2) * 0.3)[0])


def test_hdf5_round_trip(tmp_path):
    eps = get_task("toy").generate(5, 0, 0.1)
    write_demos(tmp_path / "t.hdf5", eps, {"obs_keys": ["obs"], "env_name": "toy"})
    d = read_demos(tmp_path / "t.hdf5")
    assert d.num_episodes == 5 and d.env_meta["env_name"] == "toy"
    assert np.array_equal(d.obs, np.concatenate([e["obs"]["obs"] for e in eps]))
    assert np.array_equal(d.actions, np.concatenate([e["actions"] for e in eps]))
    obs, actions, valid = d.sample_chunks(64, 4, np.random.default_rng(0))
    assert obs.shape == (64, 6) and actions.shape == (64, 4, 2) and valid.shape == (64, 4)
    assert valid[:, 0].all()


@pytest.mark.parametrize("threshold, expect_steps, expect_clipped", [(0.0, 20, True), (1.01, 60, False)])
def test_bc_clip_trigger(tmp_path, threshold, expect_steps, expect_clipped):
    task = get_task("toy")
    write_demos(tmp_path / "d.hdf5", task.generate(20, 0, 0.1), task.meta())
    cfg = bc_preset("toy", "tiny", str(tmp_path / "d.hdf5"), steps=60, eval_every=20, clip_threshold=threshold,
                    eval_episodes=8, eval_envs=4, out_dir=str(tmp_path), run_name=f"bc{threshold}")
    ckpt, res = pretrain(cfg)
    assert res["bc/steps"] == expect_steps and res["bc/clipped"] is expect_clipped
    assert (ckpt / "model.safetensors").exists()


def test_mlp_time_embedding_is_the_authors_sin_cos_of_raw_t_then_linear_gelu_linear():
    import math

    from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
    from flowft.policies.networks import MLPTimeEmbedding

    emb = MLPTimeEmbedding(8)
    t = torch.tensor([0.0, 0.25, 1.0])
    freqs = torch.tensor([math.exp(-math.log(1e4) * i / 3) for i in range(4)])  # half = 4: i / (half - 1)
    feats = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], -1)  # raw t, no 1000x
    l1, l2 = emb.mlp[0], emb.mlp[2]
    expected = torch.nn.functional.gelu(feats @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    assert l1.weight.shape == (16, 8) and l2.weight.shape == (8, 16)
    assert torch.allclose(emb(t), expected, atol=1e-6)
    # a policy built with it carries the embedding's weights, so its checkpoint differs from the 'scaled' one's
    keys = set(FlowPolicy(3, 2, 2, FlowPolicyConfig(hidden=(16,), time_embed="mlp")).state_dict())
    assert {"time_embed.mlp.0.weight", "time_embed.mlp.2.bias"} <= keys
    assert not any(k.startswith("time_embed") for k in FlowPolicy(3, 2, 2, FlowPolicyConfig(hidden=(16,))).state_dict())
