"""Residual RL (Policy Decorator style, algos/residual.py): bound, zero-residual = base ODE, frozen base,
progressive exploration schedule, toy smoke run and bit-identical resume through the shared Trainer."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flowft.algos.residual import ResidualRL, progressive_prob, residual_config
from flowft.data.buffer import ReplayBuffer
from flowft.train.loop import Trainer
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, tiny_train_config

OBS, ACT, H = 6, 2, 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two torch threads on the shared 2-core box are ~30x slower for these tiny nets."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def make(**kw):
    algo = ResidualRL(replace(residual_config("toy", "tiny"), **kw), OBS, ACT, H, torch.device("cpu"), seed=0)
    with torch.no_grad():  # non-trivial normalisers: the residual lives in normalised action units
        algo.base.act_normalizer.scale.copy_(torch.tensor([0.5, 2.0]))
        algo.base.act_normalizer.shift.copy_(torch.tensor([0.1, -0.2]))
        algo.base.obs_normalizer.scale.fill_(0.7)
    return algo


def filled_buffer(steps=200, N=4):
    """Random transitions whose reward grows with every action dim: Q favours a -> +inf, so the trained
    residual is pushed against its bound."""
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(N, 10_000, OBS, ACT, H, seed=0)
    obs = rng.uniform(-1, 1, (N, OBS))
    for t in range(steps):
        a = rng.uniform(-1.5, 1.5, (N, ACT))
        nxt = rng.uniform(-1, 1, (N, OBS))
        end = np.full(N, t % 12 == 11)
        buf.add_batch(obs, a, a.sum(-1) - 1.0, np.zeros(N, bool), end, nxt, np.zeros(N, bool))
        obs = nxt
    return buf


@pytest.fixture(scope="module")
def trained():
    algo = make(actor_lr=3e-3, critic_lr=3e-3, progressive_updates=0, init_temperature=0.01)
    base_before = copy.deepcopy(algo.base.state_dict())
    buf = filled_buffer()
    for _ in range(150):
        stats = algo.update(buf)
    return algo, base_before, stats


def test_zero_mean_residual_acts_as_the_base_ode():
    algo = make()
    obs = torch.randn(16, OBS)
    got = algo.act(obs, "ode", generator=torch.Generator().manual_seed(3))
    want = algo.base.sample_ode(obs, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)
    # known answer once the mean moves: a constant pre-tanh mean m adds alpha * tanh(m) * act_scale exactly
    with torch.no_grad():
        algo.residual.net[-1].bias[: algo.d].fill_(0.5)
    moved = algo.act(obs, "ode", generator=torch.Generator().manual_seed(3))
    delta = algo.cfg.residual_scale * math.tanh(0.5) * torch.tensor([0.5, 2.0])
    assert torch.allclose(moved - want, delta.expand_as(want), atol=1e-6)


def test_residual_respects_its_bound_after_training(trained):
    algo, _, stats = trained
    alpha = algo.cfg.residual_scale
    assert stats["actor/residual_abs_mean"] > 0.7  # the critic pushed the residual towards its bound
    obs = torch.randn(20_000, OBS) * 10
    a_base = algo.base.sample_ode(obs, generator=torch.Generator().manual_seed(0))
    x = algo.features(obs, a_base)
    r, _ = algo.residual.sample(x, torch.Generator().manual_seed(1))  # [B, d]
    assert r.abs().max() <= alpha and r.abs().max() > 0.9 * alpha
    assert algo.residual.mode(x).abs().max() <= alpha
    assert algo.residual.mode(x).mean() > 0.5 * alpha  # and in the direction the critic favours
    # executed chunk - base chunk, back in normalised units, is within [-alpha, alpha] for every mode
    for mode in ("ode", "sde", "explore"):
        a = algo.act(obs, mode, generator=torch.Generator().manual_seed(2))
        base = algo.base.sample_ode(obs, generator=torch.Generator().manual_seed(2))
        assert ((a - base) / algo.base.act_normalizer.scale).abs().max() <= alpha * (1 + 1e-6)


def test_base_policy_weights_never_change(trained):
    algo, before, _ = trained
    assert algo.grad_steps == 150
    assert not any(p.requires_grad for p in algo.base.parameters())
    after = algo.base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(algo.critic_target.out.weight, algo.critic.out.weight)  # targets track by polyak


def test_progressive_exploration_schedule():
    assert [progressive_prob(s, 100) for s in (0, 25, 50, 100, 250)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert progressive_prob(0, 0) == 1.0  # 0 = no schedule
    algo = make(progressive_updates=100)
    obs = torch.randn(4000, OBS)

    def explore_vs_base(steps):
        algo.grad_steps = steps
        state = algo.act_gen.get_state()
        a = algo.act(obs, "explore")  # training RNG: the base chunk is its first draw
        base = algo.base.sample_ode(obs, generator=torch.Generator().set_state(state))
        return (a != base).any(-1).any(-1).float().mean().item()  # fraction of envs with a residual

    assert explore_vs_base(0) == 0.0
    assert abs(explore_vs_base(50) - 0.5) < 0.03
    assert abs(explore_vs_base(25) - 0.25) < 0.03
    assert explore_vs_base(100) == 1.0


def test_evaluation_never_advances_training_rng():
    algo = make()
    before = {k: g.get_state().clone() for k, g in algo.generators().items()}
    for mode in ("ode", "sde", "bon"):
        algo.act(torch.randn(3, OBS), mode, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(before[k], g.get_state()) for k, g in algo.generators().items())


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="--algo.residual-scale"):
        make(residual_scale=0.0)
    with pytest.raises(ValueError, match="--algo.progressive-updates"):
        make(progressive_updates=-1)


# ------------------------------------------------------------------------------------- shared Trainer
@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def test_toy_smoke_and_bit_identical_resume(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, algo="residual")
    full, last, part, resumed = full_and_resumed_runs(cfg, stop_at=320)
    assert "eval/ode/success" in last and all(math.isfinite(v) for v in last.values())
    bc_actor = {k: v for k, v in load_file(str(bc / "model.safetensors")).items() if k.startswith("actor.")}
    ws = final_weights(full.run_dir)
    assert bc_actor and all(torch.equal(ws[k], v) for k, v in bc_actor.items())  # the base stayed the BC policy
    assert part.algo.grad_steps > 0
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.algo.grad_steps == resumed.algo.grad_steps > 100
