"""QC and Best-of-N SFT: critic-argmax acting, best-of-N TD next action, SFT target = argmax sample, toy smoke +
bit-identical resume."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from flowft.algos.qc import QC, QCConfig, qc_config
from flowft.data.buffer import ReplayBuffer
from flowft.types import ChunkBatch
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, tiny_train_config
from toy_checks import assert_toy_eval

OBS, DA, H = 6, 2, 4


class KnownQ(nn.Module):
    """Q_m(s, a) = -||a - a*||^2 + offset_m for every head m (offsets make mean and min differ)."""

    def __init__(self, a_star: torch.Tensor, offsets=(0.0, 0.0)):
        super().__init__()
        self.a_star, self.offsets = a_star, torch.tensor(offsets)

    def forward(self, obs, actions):
        q = -((actions - self.a_star) ** 2).sum((-2, -1))  # [...]
        return q.unsqueeze(0) + self.offsets.view(-1, *([1] * q.dim()))  # [M, ...]


class SumQ(nn.Module):
    """Qbar_m(s, a) = sum(a) + offset_m: the TD value of a' is easy to hand-check."""

    def __init__(self, offsets=(0.0, 2.0)):
        super().__init__()
        self.offsets = torch.tensor(offsets)

    def forward(self, obs, actions):
        q = actions.sum((-2, -1))
        return q.unsqueeze(0) + self.offsets.view(-1, *([1] * q.dim()))


def make(target="buffer", **kw):
    cfg = replace(qc_config(target, "toy", "tiny"), **kw)
    return QC(cfg, OBS, DA, H, torch.device("cpu"), seed=0)


def draw(algo, obs, n, seed):
    """The n ODE candidates best_of_n draws from a generator seeded with `seed`: [n, B, H, Da]."""
    B = obs.shape[0]
    rep = obs.unsqueeze(0).expand(n, B, OBS).reshape(n * B, OBS)
    return algo.actor.sample_ode(rep, generator=torch.Generator().manual_seed(seed)).view(n, B, H, DA)


def test_acts_with_the_critic_argmax():
    algo = make(best_of_n=8)
    a_star = torch.full((H, DA), 0.3)
    algo.critic = KnownQ(a_star)
    obs = torch.randn(5, OBS)
    chosen = algo.act(obs, "bon", generator=torch.Generator().manual_seed(7))  # [5, H, Da]
    cands = draw(algo, obs, 8, 7)  # the same draws
    q = -((cands - a_star) ** 2).sum((-2, -1))  # [8, 5]
    best = q.argmax(0)
    assert torch.equal(chosen, cands[best, torch.arange(5)])
    assert (best != 0).any()  # the pick is not simply the first sample
    # explore uses the training generator: same rule on act_gen's draws
    state = algo.act_gen.get_state()
    explored = algo.act(obs, "explore")
    algo.act_gen.set_state(state)
    cands = algo.actor.sample_ode(obs.unsqueeze(0).expand(8, 5, OBS).reshape(40, OBS), generator=algo.act_gen)
    cands = cands.view(8, 5, H, DA)
    assert torch.equal(explored, cands[(-((cands - a_star) ** 2).sum((-2, -1))).argmax(0), torch.arange(5)])


def test_ode_and_sde_modes_use_the_flow_policy_alone():
    algo = make(best_of_n=8)
    algo.critic = KnownQ(torch.zeros(H, DA))
    obs = torch.randn(3, OBS)
    ode = algo.act(obs, "ode", generator=torch.Generator().manual_seed(1))
    assert torch.equal(ode, algo.actor.sample_ode(obs, generator=torch.Generator().manual_seed(1)))
    sde = algo.act(obs, "sde", generator=torch.Generator().manual_seed(2))
    assert torch.equal(sde, algo.actor.sample_sde(obs, 1, generator=torch.Generator().manual_seed(2)).actions[0])


def test_evaluation_never_advances_training_rng():
    algo = make(best_of_n=4, q_agg="subsample")
    before = {k: g.get_state().clone() for k, g in algo.generators().items()}
    for mode in ("ode", "sde", "bon"):
        algo.act(torch.randn(3, OBS), mode, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(before[k], g.get_state()) for k, g in algo.generators().items())


def test_explore_waits_for_bon_after_updates():
    algo = make(best_of_n=8, bon_after_updates=2)
    obs = torch.randn(2, OBS)
    state = algo.act_gen.get_state()
    a = algo.act(obs, "explore")
    algo.act_gen.set_state(state)
    assert torch.equal(a, algo.actor.sample_ode(obs, generator=algo.act_gen))


@pytest.mark.parametrize("q_agg", ["mean", "min"])
def test_td_target_uses_best_of_n_next_action(q_agg):
    """Hand check: y = R + gamma^n mask * agg_m Qbar_m(s_boot, a'), a' = the online critic's argmax of N samples."""
    gamma, n = 0.9, 6
    algo = make(best_of_n=n, gamma=gamma, q_agg=q_agg)
    a_star = torch.full((H, DA), -0.2)
    algo.critic = KnownQ(a_star, offsets=(0.0, 5.0))  # selection (argmax invariant to the head offsets)
    algo.critic_target = SumQ(offsets=(0.0, 2.0))  # value
    batch = ChunkBatch(
        obs=torch.randn(2, OBS), actions=torch.zeros(2, H, DA),
        rewards=torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 1.0, 0.0, 0.0]]),
        terminals=torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0]]), ends=torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0]]),
        valid=torch.ones(2, H), boot_obs=torch.randn(2, OBS))
    state = algo.gen.get_state()
    y, valid = algo.td_targets(batch)
    algo.gen.set_state(state)
    rep = batch.boot_obs.unsqueeze(0).expand(n, 2, OBS).reshape(n * 2, OBS)
    cands = algo.actor.sample_ode(rep, generator=algo.gen).view(n, 2, H, DA)
    best = cands[(-((cands - a_star) ** 2).sum((-2, -1))).argmax(0), torch.arange(2)]  # [2, H, Da]
    qbar = best.sum((-2, -1)) + (1.0 if q_agg == "mean" else 0.0)  # mean of offsets (0, 2) = 1, min = 0
    R = torch.tensor([1 + gamma**3, 0.5 + gamma])
    expected = R + torch.tensor([gamma**4, 0.0]) * qbar  # second chunk terminates: no bootstrap
    assert torch.allclose(y, expected, atol=1e-6)
    assert torch.equal(valid[1], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    # a single sample (not the argmax) would give a different target
    assert not torch.allclose(R + torch.tensor([gamma**4, 0.0]) * (cands[0].sum((-2, -1)) + 1.0), y)


def filled_buffer(seed=0):
    buf = ReplayBuffer(2, 200, OBS, DA, H, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for t in range(40):
        end = (t % 10) == 9
        buf.add_batch(torch.randn(2, OBS, generator=g).numpy(), (torch.rand(2, DA, generator=g) * 2 - 1).numpy(),
                      [float(end)] * 2, [end] * 2, [False] * 2, torch.randn(2, OBS, generator=g).numpy(), [end] * 2)
    return buf


def test_bon_sft_regresses_on_the_argmax_sample():
    algo = make("best_of_n", best_of_n=8)
    a_star = torch.full((H, DA), 0.5)
    algo.critic = KnownQ(a_star)
    batch = filled_buffer().sample(16)
    state = algo.gen.get_state()
    obs, target, valid = algo.regression_target(batch, None)
    algo.gen.set_state(state)
    rep = batch.obs.unsqueeze(0).expand(8, 16, OBS).reshape(128, OBS)
    cands = algo.actor.sample_ode(rep, generator=algo.gen).view(8, 16, H, DA)
    best = (-((cands - a_star) ** 2).sum((-2, -1))).argmax(0)
    assert torch.equal(target, cands[best, torch.arange(16)]) and valid is None and torch.equal(obs, batch.obs)
    assert not torch.equal(target, batch.actions)


@pytest.mark.parametrize("target", ["buffer", "best_of_n"])
def test_update_regresses_on_the_regression_target(target):
    """update() feeds cfm_loss exactly regression_target's chunks (buffer actions for QC, argmax for BoN-SFT)."""
    algo = make(target, best_of_n=4, batch_size=8)
    buf = filled_buffer()
    seen, real_target, real_cfm = {}, algo.regression_target, algo.actor.cfm_loss

    def spy_target(batch, buffer):
        out = real_target(batch, buffer)
        seen["target"], seen["batch"] = out, batch
        return out

    def spy_cfm(obs, actions, valid=None, generator=None):
        seen["cfm"] = actions
        return real_cfm(obs, actions, valid, generator=generator)

    algo.regression_target, algo.actor.cfm_loss = spy_target, spy_cfm
    stats = algo.update(buf)
    assert torch.equal(seen["cfm"], seen["target"][1])
    assert torch.equal(seen["cfm"], seen["batch"].actions) == (target == "buffer")
    assert "actor/cfm_loss" in stats and "critic/loss" in stats and algo.grad_steps == 1


def test_critic_warmup_skips_the_actor():
    algo = make(critic_warmup=1, batch_size=8, best_of_n=2)
    before = [p.clone() for p in algo.actor.parameters()]
    stats = algo.update(filled_buffer())
    assert "actor/cfm_loss" not in stats
    assert all(torch.equal(a, b) for a, b in zip(before, algo.actor.parameters()))
    assert "actor/cfm_loss" in algo.update(filled_buffer())


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="--algo.best-of-n"):
        QCConfig(best_of_n=0)
    with pytest.raises(ValueError, match="--algo.tau"):
        QCConfig(tau=0.0)


# ------------------------------------------------------------------------------------- toy smoke + resume
@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


@pytest.mark.parametrize("algo", ["qc", "bon-sft"])
def test_toy_smoke_and_bit_identical_resume(bc, tmp_path, algo):
    cfg = tiny_train_config(bc, tmp_path, algo=algo)
    full, out, part, resumed = full_and_resumed_runs(cfg, stop_at=320)
    assert "bon" in assert_toy_eval(out, cfg.run.eval_episodes, full.run_dir)
    assert not (full.run_dir / "DIVERGED.txt").exists()  # update() checks every loss is finite
    assert full.algo.grad_steps > 100
    assert part.algo.grad_steps > 0
    a, b = final_weights(full.run_dir), final_weights(part.run_dir)
    assert a.keys() == b.keys() and any(k.startswith("critic_target") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
