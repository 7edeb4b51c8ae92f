"""EXPO: bounded edits, critic-argmax OTF selection (acting and TD backup), imitation-only base, toy smoke + resume."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from flowft.algos.expo import EXPO, expo_config
from flowft.critics.ensemble import polyak
from flowft.data.buffer import ReplayBuffer
from flowft.train.loop import Trainer
from flowft.utils.schedules import restarting_warmup_cosine
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, tiny_train_config

DO, DA, H = 6, 2, 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: one thread (as the tiny presets' Trainer); a second one only adds contention on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(**kw):
    cfg = replace(expo_config("toy", "tiny"), **kw)
    return EXPO(cfg, DO, DA, H, torch.device("cpu"), seed=0)


def random_buffer(steps=200, seed=0):
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(4, 4000, DO, DA, H, seed=seed)
    for t in range(steps):
        end = np.full(4, t % 12 == 11)
        buf.add_batch(rng.normal(size=(4, DO)), rng.uniform(-1, 1, (4, DA)), rng.normal(size=4), end & (t % 24 == 23),
                      end & (t % 24 != 23), rng.normal(size=(4, DO)), np.zeros(4, bool))
    return buf


class KnownQ(nn.Module):
    """Q_m(s, a) = -|a - c|^2 for every head m (any aggregation gives the same value); records its inputs."""

    def __init__(self, c: torch.Tensor, M: int = 2):
        super().__init__()
        self.c, self.M, self.calls = c, M, []

    def forward(self, obs, actions):
        self.calls.append((obs.clone(), actions.clone()))
        q = -((actions - self.c) ** 2).sum((-1, -2))
        return q.unsqueeze(0).expand(self.M, *q.shape)


def test_edits_respect_their_bound_also_after_training():
    beta = 0.05
    algo = make(edit_bound=beta, edit_lr=3e-2)  # a large edit lr pushes the edit mean hard during training
    d = H * DA
    x = 50.0 * torch.randn(8_000, DO + d)  # large inputs saturate the tanh
    for _ in range(2):
        delta, _ = algo.editor.sample(x, torch.Generator().manual_seed(1))
        mode = algo.editor.mode(x)
        for u in (delta, mode):
            assert u.abs().max() <= beta * (1 + 1e-6)
        assert delta.abs().max() > 0.9 * beta  # the bound is actually reached, so the check is not vacuous
        obs = torch.randn(64, DO)
        g = torch.Generator().manual_seed(2)
        cands = algo.candidates(obs, g)  # [G, B, d]
        N, E = algo.cfg.num_base, algo.cfg.num_edit
        assert cands.shape == (N + E, 64, d)
        assert (cands[N:] - cands[:E]).abs().max() <= beta + 1e-6  # edited candidate vs the base it edits
        buf = random_buffer()
        before = [p.clone() for p in algo.editor.parameters()]
        for _ in range(20):
            algo.update(buf)
        assert any(not torch.equal(a, b) for a, b in zip(before, algo.editor.parameters()))


def test_bon_executes_the_critic_argmax_among_n_plus_m_candidates():
    algo = make(num_base=6, num_edit=4, edit_bound=0.3)
    B = 32
    obs = torch.randn(B, DO)
    c = torch.rand(H, DA) * 2 - 1
    algo.critic_target = KnownQ(c)
    chosen = algo.act(obs, "bon", generator=torch.Generator().manual_seed(5))  # [B, H, Da]
    # the same draws rebuilt from the public blocks: N base ODE samples, then edits of the first E of them
    g = torch.Generator().manual_seed(5)
    pol = algo.actor_target
    rep = obs.unsqueeze(0).expand(6, B, DO).reshape(6 * B, DO)
    base = pol.normalize_actions(pol.sample_ode(rep, generator=g)).view(6, B, -1)  # [N, B, d]
    feats = torch.cat([pol.obs_normalizer(obs).unsqueeze(0).expand(4, B, DO), base[:4]], -1)
    delta, _ = algo.editor.sample(feats, g)
    cands = pol.unnormalize_actions(torch.cat([base, (base[:4] + delta).clamp(-1, 1)], 0))  # [G, B, H, Da]
    q = -((cands - c) ** 2).sum((-1, -2))  # [G, B]
    best = q.argmax(0)
    assert torch.equal(chosen, cands[best, torch.arange(B)])
    assert (best != 0).any() and (best >= 6).any()  # selection happens, edited candidates can win


def test_td_backup_uses_the_otf_argmax_next_action():
    algo = make(num_base=5, num_edit=3)
    known = KnownQ(torch.rand(H, DA) * 2 - 1)
    algo.critic_target = known
    batch = random_buffer().sample(16)
    algo.critic_step(batch)
    (o1, cands), (o2, next_a) = known.calls  # selection over candidates, then the bootstrap value
    assert cands.shape[:2] == (8, 16) and torch.equal(o2, batch.boot_obs)
    best = (-((cands - known.c) ** 2).sum((-1, -2))).argmax(0)
    assert torch.equal(next_a, cands[best, torch.arange(16)])


def test_ode_mode_is_base_ode_plus_mean_edit_without_critic():
    algo = make()
    algo.critic_target = None  # any critic use would fail
    obs = torch.randn(7, DO)
    out = algo.act(obs, "ode", generator=torch.Generator().manual_seed(3))
    base = algo.base_samples(obs, 1, torch.Generator().manual_seed(3))[0]
    mean_edit = algo.editor.mode(algo.edit_features(obs, base))
    expected = algo.actor_target.unnormalize_actions((base + mean_edit).clamp(-1, 1))
    assert torch.equal(out, expected)
    assert algo.act(obs, "sde", generator=torch.Generator().manual_seed(3)).shape == (7, H, DA)


def test_base_policy_is_trained_only_by_cfm():
    algo = make()
    buf = random_buffer()
    ref = copy.deepcopy(algo.actor)
    old_target = copy.deepcopy(algo.actor_target)
    seen = {}
    real = algo.actor.cfm_loss

    def spy(obs, actions, valid=None, generator=None):
        seen.update(obs=obs, actions=actions, valid=valid, state=generator.get_state().clone())
        return real(obs, actions, valid, generator=generator)

    algo.actor.cfm_loss = spy
    algo.update(buf)
    # the same step with the CFM loss alone
    opt = torch.optim.AdamW(ref.parameters(), lr=1.0, weight_decay=0.0)
    for group in opt.param_groups:
        cfg = algo.cfg
        group["lr"] = restarting_warmup_cosine(0, cfg.actor_lr, cfg.actor_lr_floor, cfg.lr_warmup, cfg.lr_cycle)
    g = torch.Generator()
    g.set_state(seen["state"])
    ref.cfm_loss(seen["obs"], seen["actions"], seen["valid"], generator=g).backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), algo.cfg.grad_clip)
    opt.step()
    moved = False
    for (name, a), b in zip(algo.actor.named_parameters(), ref.parameters()):
        assert torch.equal(a, b), name
        moved |= not torch.equal(a, dict(old_target.named_parameters())[name])
    assert moved
    polyak(old_target, ref, algo.cfg.tau_actor)  # the EMA base follows the imitation-only base by Polyak
    for a, b in zip(algo.actor_target.parameters(), old_target.parameters()):
        assert torch.equal(a, b)


def test_evaluation_never_advances_training_rng():
    algo = make()
    before = {k: g.get_state().clone() for k, g in algo.generators().items()}
    for mode in ("ode", "sde", "bon"):
        algo.act(torch.randn(3, DO), mode, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(before[k], g.get_state()) for k, g in algo.generators().items())


@pytest.mark.parametrize("bad", [{"edit_bound": 0.0}, {"num_edit": 9}, {"num_base": 0, "num_edit": 0}])
def test_bad_config_names_the_field(bad):
    with pytest.raises(ValueError, match=r"--algo\.(edit-bound|num-edit|num-base) must be"):
        make(**bad)


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def test_toy_smoke_and_bit_identical_resume(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path, algo="expo")
    full, _, part, resumed = full_and_resumed_runs(cfg, stop_at=320)
    assert full.algo.grad_steps > 50
    assert part.algo.grad_steps > 0
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys() and any(k.startswith("edit") for k in a) and any(k.startswith("temperature") for k in a)
    for k in a:
        assert torch.isfinite(a[k]).all(), k
        assert torch.equal(a[k], b[k]), k
    assert full.algo.grad_steps == resumed.algo.grad_steps
