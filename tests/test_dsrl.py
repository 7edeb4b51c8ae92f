"""DSRL-NA (algos/dsrl.py): executed action = frozen ODE of the actor's noise, frozen weights, noise bound,
distillation target, validation, and a toy run through the shared Trainer with bit-identical resume."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from flowft.algos.dsrl import DSRL, dsrl_config
from flowft.data.buffer import ReplayBuffer
from flowft.deploy import load_bc_actor
from flowft.train.loop import Trainer
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, tiny_train_config

DO, DA, H = 6, 2, 4
DIMS = {"obs_dim": DO, "act_dim": DA, "chunk_len": H}


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def make_algo(bc, **over) -> DSRL:
    cfg = replace(dsrl_config("toy", "tiny"), batch_size=16, **over)
    algo = DSRL(cfg, DO, DA, H, torch.device("cpu"), seed=0)
    algo.init_from_bc(load_bc_actor(bc, DIMS, cfg.policy))
    return algo


def random_buffer(steps=64, seed=0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(2, 1000, DO, DA, H, seed=seed)
    for t in range(steps):
        end = np.full(2, t % 12 == 11)
        buf.add_batch(rng.normal(size=(2, DO)), rng.uniform(-1, 1, (2, DA)), rng.uniform(0, 1, 2), end, end & False,
                      rng.normal(size=(2, DO)), end)
    return buf


def test_executed_action_is_frozen_ode_of_the_noise(bc):
    algo = make_algo(bc)
    obs = torch.randn(32, DO, generator=torch.Generator().manual_seed(3))
    feats = algo.actor.obs_normalizer(obs)
    mean, log_std = algo.noise_actor(feats)
    b = algo.cfg.noise_bound
    # sde / bon: recompute w independently from the same seed: b * tanh(mu + sigma * eps), eps from the generator
    for mode in ("sde", "bon"):
        a = algo.act(obs, mode, generator=torch.Generator().manual_seed(7))
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
        w = b * torch.tanh(mean + log_std.exp() * eps)
        assert torch.equal(a, algo.actor.sample_ode(obs, noise=w))
        # not the BC policy's own sample with the same seed (w ~ N(0, I)), and not its mode
        assert not torch.allclose(a, algo.actor.sample_ode(obs, generator=torch.Generator().manual_seed(7)))
        assert not torch.allclose(a, algo.act(obs, "ode"))
    assert torch.equal(algo.act(obs, "ode"), algo.actor.sample_ode(obs, noise=b * torch.tanh(mean)))
    # evaluation with its own generator never advances the training / acting generators
    state = (algo.gen.get_state(), algo.act_gen.get_state())
    algo.act(obs, "sde", generator=torch.Generator().manual_seed(1))
    assert torch.equal(state[0], algo.gen.get_state()) and torch.equal(state[1], algo.act_gen.get_state())


def test_explore_uses_base_policy_until_first_update_then_noise_actor(bc):
    algo = make_algo(bc)
    obs = torch.randn(8, DO)
    g = algo.act_gen.get_state()
    a0 = algo.act(obs, "explore")
    assert torch.equal(a0, algo.actor.sample_ode(obs, generator=torch.Generator().set_state(g)))
    algo.update(random_buffer())
    g = algo.act_gen.get_state()
    a1 = algo.act(obs, "explore")
    w = algo.sample_noise(obs, torch.Generator().set_state(g))[0]
    assert torch.equal(a1, algo.actor.sample_ode(obs, noise=w))


def test_noise_respects_bound(bc):
    algo = make_algo(bc, noise_bound=0.5)
    with torch.no_grad():  # push the pre-tanh means far out so that the bound is what keeps w inside
        for p in algo.noise_actor.parameters():
            p.mul_(50.0)
    obs = torch.randn(256, DO) * 5
    w, _ = algo.sample_noise(obs, torch.Generator().manual_seed(0))
    mode = algo.noise_actor.mode(algo.actor.obs_normalizer(obs))
    for x in (w, mode):
        assert x.abs().max() <= 0.5
        assert x.abs().max() > 0.49  # saturated: an unbounded head would exceed 0.5


def test_flow_policy_frozen_and_learners_move(bc):
    algo = make_algo(bc, noise_critic_every=1, noise_critic_steps=2)
    before = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in algo.modules().items()}
    buf = random_buffer()
    for _ in range(5):
        stats = algo.update(buf)
    assert algo.grad_steps == 5 and "critic/distill_loss" in stats and "actor/alpha" in stats
    after = {k: m.state_dict() for k, m in algo.modules().items()}
    for n, t in before["actor"].items():
        assert torch.equal(t, after["actor"][n]), n
    assert not any(p.requires_grad for p in algo.actor.parameters())
    assert "actor" not in algo.optimizers() and all(
        p is not q for opt in algo.optimizers().values() for g in opt.param_groups for p in g["params"]
        for q in algo.actor.parameters())
    for k in ("noise_actor", "critic", "critic_target", "noise_critic", "temperature"):
        assert any(not torch.equal(t, after[k][n]) for n, t in before[k].items()), k


def test_distillation_target_is_action_critic_of_ode(bc):
    algo = make_algo(bc)
    with torch.no_grad():  # make the online critic differ from its target: the target must use the online one
        for p in algo.critic.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
    g = torch.Generator().manual_seed(2)
    obs, w = torch.randn(5, DO, generator=g), 1.3 * torch.randn(5, algo.d, generator=g)
    loss, target = algo.distill_loss(obs, w)
    # independent recomputation: Euler ODE from x0 = w, clip, then each head of Q^A
    x, K = w.clone(), algo.cfg.policy.denoise_steps
    on = algo.actor.obs_normalizer(obs)
    for k in range(K):
        x = x + algo.actor.velocity(on, x, torch.full((5,), k / K)) / K
    a = algo.actor.unnormalize_actions(x.clamp(-1, 1))
    expected = algo.critic(obs, a).detach()  # [M, 5]
    assert target.shape == (2, 5)
    assert torch.allclose(target, expected, atol=1e-5)
    assert not torch.allclose(target, algo.critic_target(obs, a), atol=1e-3)
    pred = algo.noise_critic(obs, (w / algo.cfg.noise_bound).view(5, H, DA))
    assert torch.allclose(loss, 0.5 * ((pred - expected) ** 2).mean(-1).sum(), atol=1e-5)
    loss.backward()  # the loss trains Q^W only
    assert all(p.grad is None for p in algo.critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in algo.noise_critic.parameters())


def test_bad_config_is_rejected():
    base = dsrl_config("toy", "tiny")
    for over, name in (({"variant": "sac"}, "variant"), ({"noise_bound": 0.0}, "noise-bound"),
                       ({"noise_critic_every": 0}, "noise-critic-every"), ({"tau": 0.0}, "tau")):
        with pytest.raises(ValueError, match=rf"--algo\.{name} "):
            DSRL(replace(base, **over), DO, DA, H, torch.device("cpu"), 0)


def test_toy_run_and_bit_identical_resume(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, algo="dsrl")
    full, _, part, resumed = full_and_resumed_runs(cfg, stop_at=320)
    assert full.algo.grad_steps > 0
    bc_state = load_bc_actor(bc, DIMS, cfg.algo.policy)
    for n, t in full.algo.actor.state_dict().items():
        assert torch.equal(t, bc_state[n]), n  # the flow policy never moves
    assert part.algo.grad_steps > 0
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys() and any(k.startswith("noise_critic") for k in a)
    for k in a:
        assert torch.isfinite(a[k]).all(), k
        assert torch.equal(a[k], b[k]), k
    assert full.algo.grad_steps == resumed.algo.grad_steps
