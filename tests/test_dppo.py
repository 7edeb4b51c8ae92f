"""DPPO: GAE known answers, rollout storage, per-step log-probs, ratio = 1 at theta_old, loop smoke + exact resume."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flowft.algos.dppo import DPPO, DPPOConfig
from flowft.envs.make import make_vec_env, reset_vec_env
from flowft.objectives.gae import RunningReturnScaler, gae
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.policies.sde import LOG_2PI, SDEConfig
from flowft.registry import get_task
from flowft.train.collector import ChunkCollector, StepResult
from flowft.train.loop import Trainer
from flowft.train.onpolicy import RolloutStorage
from flowft.utils.checkpoint import latest_checkpoint
from helpers import make_bc_checkpoint, tiny_train_config


def test_gae_hand_computed_episode_with_truncation_and_termination():
    # decisions 0-1: an episode truncated after decision 1 (bootstraps with V(final obs) = 5);
    # decision 2: a one-decision episode that terminates (no bootstrap); decision 3: cut by the rollout end (V = 6)
    t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    rewards, values, next_values = t(1.0, 0.0, 2.0, -1.0), t(1.0, 2.0, 3.0, 4.0), t(2.0, 5.0, 7.0, 6.0)
    terminated = torch.tensor([False, False, True, False])
    cut = torch.tensor([False, True, True, True])
    adv, ret = gae(rewards, values, next_values, terminated, cut, gamma=0.9, lam=0.5)
    # deltas: 1 + .9*2 - 1 = 1.8; 0 + .9*5 - 2 = 2.5; 2 - 3 = -1; -1 + .9*6 - 4 = 0.4; A_0 = 1.8 + .45*2.5
    assert torch.allclose(adv, t(2.925, 2.5, -1.0, 0.4))
    assert torch.allclose(ret, t(3.925, 4.5, 2.0, 4.4))
    with pytest.raises(ValueError, match="values"):
        gae(rewards, values[:3], next_values, terminated, cut, 0.9, 0.5)


def test_running_return_scaler():
    s = RunningReturnScaler(gamma=0.5)
    out = s(np.array([1.0, 1.0, 2.0]), np.array([0, 0, 1]), np.array([False, True, False]))
    # returns 1, 1.5 (env 0), 2 (env 1): batch var 1/6 merged with the prior (var 1, count 1e-4)
    rets = np.array([1.0, 1.5, 2.0])
    assert s.var == pytest.approx(rets.var(), rel=1e-3) and s.count == pytest.approx(3.0, abs=1e-3)
    assert np.allclose(out, np.array([1.0, 1.0, 2.0]) / math.sqrt(s.var + s.eps))
    assert s.ret[0] == 0.0 and s.ret[1] == 2.0  # env 0's episode ended: its running return restarts


def _step(N, new, rew, term, trunc, obs, next_obs):
    z = np.zeros(N, bool)
    return StepResult(np.array(obs, np.float32), np.zeros((N, 1), np.float32), np.array(rew, np.float32),
                      np.array(term), np.array(trunc), np.array(next_obs, np.float32), z, new_chunk=np.array(new))


def test_rollout_storage_sums_chunk_rewards_and_marks_ends():
    st = RolloutStorage(2)
    ex = lambda *rows: {"logp": torch.tensor(rows, dtype=torch.float32)}  # noqa: E731
    st.add(_step(2, [1, 1], [-1, -1], [0, 0], [0, 0], [[0], [10]], [[1], [11]]), ex(0.0, 10.0))
    st.add(_step(2, [0, 0], [-1, 0], [0, 1], [0, 0], [[1], [11]], [[2], [12]]), None)  # env 1 terminates
    st.add(_step(2, [0, 1], [-1, -1], [0, 0], [1, 0], [[2], [20]], [[3], [21]]), ex(20.0))  # env 0 truncates
    st.add(_step(2, [1, 0], [-1, -1], [0, 0], [0, 0], [[30], [21]], [[31], [22]]), ex(30.0))
    b = st.batch(torch.device("cpu"))
    assert st.steps == 4 and len(st) == 4
    assert b.env.tolist() == [0, 0, 1, 1]
    assert b.rewards.tolist() == [-3.0, -1.0, -1.0, -2.0]
    assert b.terminated.tolist() == [False, False, True, False]
    assert b.ended.tolist() == [True, False, True, False]
    assert b.cut.tolist() == [True, True, True, True]
    assert b.obs[:, 0].tolist() == [0.0, 30.0, 10.0, 20.0]
    assert b.next_obs[:, 0].tolist() == [3.0, 31.0, 12.0, 22.0]
    assert b.extras["logp"].tolist() == [0.0, 30.0, 10.0, 20.0]
    with pytest.raises(ValueError, match="no extras"):
        st.add(_step(2, [1, 0], [0, 0], [0, 0], [0, 0], [[0], [0]], [[0], [0]]), None)


@pytest.mark.parametrize("schedule", ["tapered", "constant"])
def test_step_log_probs_sum_to_chain_log_prob(schedule, gen):
    cfg = FlowPolicyConfig(hidden=(32, 32), denoise_steps=4, sde=SDEConfig(sigma_b=0.2, schedule=schedule))
    pol = FlowPolicy(3, 2, 2, cfg)
    obs = torch.randn(5, 3, generator=gen)
    s = pol.sample_sde(obs, 2, generator=gen)  # chain [2, 5, K+1, d]
    chain = s.chain.reshape(10, 5, 4)
    steps = pol.step_log_probs(obs.repeat(2, 1), chain)  # [10, K, d]
    assert steps.shape == (10, 4, 4)
    x0 = chain[:, 0]
    lp0 = -0.5 * (x0 * x0).sum(-1) - 0.5 * 4 * LOG_2PI
    total = (lp0 + steps.sum((-1, -2))) / (5 * 4)
    assert torch.allclose(total, s.logp.reshape(10), atol=1e-5)
    assert torch.allclose(total, pol.log_prob(obs, s.chain).reshape(10), atol=1e-5)
    if schedule == "constant":
        assert torch.all(steps[:, -1] == 0)  # the deterministic last step carries no density


def _filled_rollout(algo, steps=8, N=4):
    venv = make_vec_env(get_task("toy"), N, vectorization="sync")
    col = ChunkCollector(venv, algo.chunk_len, algo.device)
    col.start(reset_vec_env(venv, 0, stream=0))
    st, box = RolloutStorage(N), {}

    def act(o):
        chunk, box["x"] = algo.act_rollout(o)
        return chunk
    for _ in range(steps):
        box["x"] = None
        st.add(col.step(act), box["x"])
    venv.close()
    return st


def test_ratio_is_one_at_theta_old_and_clip_schedule():
    cfg = DPPOConfig(policy=FlowPolicyConfig(hidden=(32, 32), denoise_steps=5), critic_hidden=(32,), update_epochs=1,
                     minibatch_size=10_000, critic_warmup_rollouts=0, actor_lr=1e-12)  # ~frozen (lr > 0)
    algo = DPPO(cfg, 6, 2, 4, torch.device("cpu"), 0)
    assert algo.clip[0].item() == pytest.approx(0.001) and algo.clip[-1].item() == pytest.approx(0.01)
    assert torch.all(algo.std >= 0.1)
    st = _filled_rollout(algo)
    stats = algo.update_rollout(st)  # one minibatch with every (decision, step) pair at theta = theta_old
    assert stats["actor/ratio_max"] == pytest.approx(1.0, abs=1e-5)
    assert stats["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert stats["actor/clip_frac"] == 0.0
    assert algo.grad_steps == 1 and algo.rollouts == 1
    # a trained actor moves the ratios (the check above can fail)
    algo2 = DPPO(replace(cfg, actor_lr=1e-2, update_epochs=5, minibatch_size=50), 6, 2, 4, torch.device("cpu"), 0)
    stats2 = algo2.update_rollout(_filled_rollout(algo2))
    assert stats2["actor/clip_frac"] > 0.0
    with pytest.raises(ValueError, match=r"--algo\.min-std must be a number > 0"):
        DPPO(replace(cfg, min_std=0.0), 6, 2, 4, torch.device("cpu"), 0)


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def test_onpolicy_loop_smoke_and_bit_identical_resume(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, algo="dppo", env_steps=640, ckpt_every=300, num_envs=4)
    cfg = replace(cfg, algo=replace(cfg.algo, rollout_steps=20, critic_warmup_rollouts=1, minibatch_size=200),
                  run=replace(cfg.run, log=replace(cfg.run.log, log_every=160)))
    full = Trainer(replace(cfg, run=replace(cfg.run, run_name="full")))
    assert full.buffer is None and full.rollout is not None
    full.run()
    part = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")))
    part.run(stop_at=300)
    assert latest_checkpoint(part.run_dir).name == "0000000320"  # the first rollout boundary after 300
    assert part.algo.rollouts == 4 and part.algo.grad_steps > 0
    resumed = Trainer(replace(cfg, run=replace(cfg.run, run_name="part")), run_dir=part.run_dir, resume=True)
    assert resumed.env_steps == 320 and resumed.algo.rollouts == 4
    resumed.run()
    a = load_file(str(latest_checkpoint(full.run_dir) / "model.safetensors"))
    b = load_file(str(latest_checkpoint(part.run_dir) / "model.safetensors"))
    bc_actor = load_file(str(bc / "model.safetensors"))
    assert any(not torch.equal(a[k], bc_actor[k]) for k in bc_actor if k in a)  # the actor was trained
    for k in a:
        assert torch.isfinite(a[k]).all(), k
        assert torch.equal(a[k], b[k]), k
    assert full.algo.grad_steps == resumed.algo.grad_steps and full.algo.rollouts == resumed.algo.rollouts == 8
    rows = (full.run_dir / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    assert "train/actor/pg_loss" in header and "train/critic/v_loss" in header
    assert not (full.run_dir / "DIVERGED.txt").exists()
