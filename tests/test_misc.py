"""Normaliser round trip, BC clip trigger (inclusive thresholds), success tagging through the real collector, toy env
semantics."""

import numpy as np
import pytest
import torch

from flowft.algos.bc import pretrain
from flowft.data.readers.hdf5 import read_demos, write_demos
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


@pytest.mark.parametrize("threshold, expect_steps, expect_clipped", [
    (0.5, 40, True),     # the check at 40 reads exactly the threshold: >= clips there
    (0.25, 20, True),    # the first check already reads it
    (0.55, 80, False),   # never reached: trains all `steps`, not clipped
])
def test_bc_first_check_clip_is_inclusive(tmp_path, monkeypatch, threshold, expect_steps, expect_clipped):
    """First-check gate (the toy preset's) with a scripted evaluator: checks at 20/40/60/80 read 0.25/0.5/0.5/0.375.
    A strict > would run past 40 for threshold 0.5 and report the run as not clipped."""
    from flowft.algos import bc as bc_mod

    reads, calls = {20: 0.25, 40: 0.5, 60: 0.5, 80: 0.375}, []

    def scripted(policy, bon, venv, H, cfg, kind, step, device):
        calls.append((kind, step))
        return {"success": reads[step], "return": -1.0, "episodes": 8.0}

    monkeypatch.setattr(bc_mod, "_evaluate", scripted)
    task = get_task("toy")
    write_demos(tmp_path / "d.hdf5", task.generate(10, 0, 0.1), task.meta())
    cfg = bc_preset("toy", "tiny", str(tmp_path / "d.hdf5"), steps=80, eval_every=20, clip_threshold=threshold,
                    eval_episodes=8, eval_envs=2, out_dir=str(tmp_path), run_name=f"bc{threshold}")
    assert cfg.gate == "first-check"
    ckpt, res = pretrain(cfg)
    assert res["bc/steps"] == expect_steps and res["bc/clipped"] is expect_clipped
    assert res["eval/success"] == reads[expect_steps] and calls == [("cheap", s) for s in range(20, expect_steps + 1, 20)]
    assert (ckpt / "model.safetensors").exists()


@pytest.mark.parametrize("cheap, confirmed, stop", [
    (0.45, 0.45, True),      # cheap check at the threshold triggers; a confirmation at the threshold clips
    (0.45, 0.5, True),       # a confirmation at the ceiling clips too ([threshold, clip_max] is closed)
    (0.4375, None, False),   # just below the threshold: no confirmation
    (0.5, 0.4375, False),    # confirmed below the threshold: go on
    (0.5, 0.515625, False),  # confirmed above the ceiling, nothing to roll back to: go on
])
def test_confirmed_gate_interval_is_closed(cheap, confirmed, stop):
    from flowft.algos.bc import BCConfig
    from flowft.algos.bc_gate import ClipGate

    cfg = BCConfig(demos="x.hdf5", plateau_window=2, plateau_tol=0.05, clip_threshold=0.45, clip_max=0.5)
    calls = []

    def evaluate(kind, step):
        calls.append(kind)
        return {"success": cheap if kind == "cheap" else confirmed, "return": -1.0}

    gate = ClipGate(cfg, torch.nn.Linear(2, 2), evaluate)
    for x in (0.3,) * 4:
        gate.plateau.update(x)
    assert gate.check(10) is stop
    # both reads are the same here; the start read comes first, and above the ceiling it decides alone
    expected = (["cheap"] if confirmed is None else ["cheap", "start"] if confirmed > cfg.clip_max
                else ["cheap", "start", "confirm"])
    assert calls == expected
    if stop:
        res = gate.finish(10)
        assert res["bc/clipped"] and res["bc/confirmed_success"] == confirmed and not res["bc/over_ceiling"]


def test_success_tagging_through_the_real_collector():
    """ToyReachEnv through the real ChunkCollector into the ReplayBuffer, stored as the Trainer stores every step
    (train/loop.py `_store`): a first episode that runs away from both goals (truncated at the horizon: a failure),
    then episodes driven by the scripted expert toward a goal (successes). Exactly the steps of the successful
    episodes are tagged; the failed episode before them is not."""
    from flowft.data.buffer import ReplayBuffer
    from flowft.envs.make import make_vec_env, reset_vec_env
    from flowft.envs.toy import expert_action
    from flowft.train.collector import ChunkCollector

    task = get_task("toy")
    H, venv = task.chunk_len, make_vec_env(task, 1)
    collector = ChunkCollector(venv, H, torch.device("cpu"))
    buf = ReplayBuffer(1, 400, 6, 2, H)
    collector.start(reset_vec_env(venv, 0, stream=0))
    rng, episodes, start = np.random.default_rng(0), [], 0

    def act(obs):  # obs [1, 6] -> chunk [1, H, 2]
        if not episodes:
            return torch.tensor([0.0, -1.0]).expand(1, H, 2)  # away from both goals (they lie at y >= 0.35)
        a = expert_action(obs[0].numpy(), 0, rng, 0.0)
        return torch.as_tensor(a).expand(1, H, 2)

    for t in range(60):
        res = collector.step(act)
        buf.add_batch(res.obs, res.actions, res.rewards, res.terminated, res.truncated, res.next_obs, res.success)
        for ep in res.finished:
            episodes.append((start, t + 1, ep["success"]))
            start = t + 1
    assert episodes[0] == (0, 12, False) and sum(s for *_, s in episodes[1:]) >= 2, episodes
    expected = np.zeros(60, bool)
    for a, b, success in episodes:
        expected[a:b] = success
    assert np.array_equal(buf.success[0, :60], expected)
    assert buf.num_success_episodes == sum(s for *_, s in episodes)
    venv.close()


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
