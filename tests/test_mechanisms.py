"""Mechanism tests for OGPO's wiring (issue 22): small hand-built critics and actors whose right answer is known,
one test per design choice that distinguishes OGPO(+CA) from a plausible near-miss. Each choice is one line of
algos/ogpo.py that the toy learning test (test_ogpo_toy.py) tolerates when it is wrong:

- the actor's group advantages are the configured kind (conservative for OGPO+CA) of the *target* critic's scores;
- the imagined chains and their old log-probs come from the *EMA* actor (theta_old), the new log-probs from the
  online actor (so the ratio is not 1 once the two differ);
- the TD target bootstraps from the *target* critic with the configured head aggregation, and the TD loss weights;
- the cloning term trains on the *success buffer* once it has a success (the replay batch before that);
- Polyak updates move the targets toward the online networks by tau;
- acting: one SDE sample / Best-of-N from the EMA actor scored by the target critic, ODE from the online actor.

Every test runs in well under a second (tiny networks, a handful of states). docs/testing.md lists the planted
mutations each test kills.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from flowft.algos import ogpo as ogpo_mod
from flowft.algos.ogpo import OGPO
from flowft.data.buffer import ReplayBuffer
from flowft.presets import ogpo_config
from flowft.types import ChunkBatch

OBS, DA, H = 6, 2, 4


def make(variant: str = "ogpo-plus-ca", **kw) -> OGPO:
    cfg = dataclasses.replace(ogpo_config(variant, "toy", "tiny"), **{"critic_warmup": 0, "grad_diag_every": 0, **kw})
    torch.manual_seed(0)
    return OGPO(cfg, OBS, DA, H, torch.device("cpu"), seed=0)


class QuadQ(nn.Module):
    """Q_m(s, a) = -||a - x*_m||^2 + c_m (sum over the chunk's H x Da entries): heads with different optima, so
    they can disagree in sign about which of two actions is better. No parameters: only ever read."""

    def __init__(self, x_star=(0.0, 1.0), c=(0.0, 3.0)):
        super().__init__()
        self.x_star, self.c = torch.tensor(x_star), torch.tensor(c)

    def forward(self, obs, actions):
        lead = actions.shape[:-2]
        x = self.x_star.view(-1, *([1] * (len(lead) + 2)))  # [M, 1.., 1, 1]
        q = -((actions.unsqueeze(0) - x) ** 2).sum((-2, -1))  # [M, ...]
        return q + self.c.view(-1, *([1] * len(lead)))


def const_critic(critic, values) -> None:
    """Make a CriticEnsemble output exactly values[m] for head m whatever (s, a): zero output weights, bias c_m."""
    with torch.no_grad():
        critic.out.weight.zero_()
        critic.out.bias.copy_(torch.tensor(values, dtype=torch.float32).view(-1, 1, 1))


def perturb(module: nn.Module, scale: float = 0.5, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------------- group advantages (actor)
# G = 2 imagined chunks (every entry = x) for B = 2 states, scored by QuadQ(x* = (0, 1), c = (0, 3)):
#   state 0: x = 0.25 -> Q = (-0.5, -1.5), x = 1.0 -> (-8, 3): per-head A = (3.75, -2.25) / (-3.75, 2.25): the heads
#            disagree in sign -> conservative 0; vanilla: head means (-1, -2.5) -> A = +-0.75
#   state 1: x = 0.5 -> (-2, 1), x = 2.0 -> (-32, -5): per-head A = (15, 3) / (-15, -3): agree -> conservative +-3;
#            vanilla: head means (-0.5, -18.5) -> +-9
X = torch.tensor([[0.25, 0.5], [1.0, 2.0]])  # [G, B]
Q_EXPECTED = torch.tensor([[[-0.5, -2.0], [-1.5, 1.0]], [[-8.0, -32.0], [3.0, -5.0]]])  # [G, M, B]
R2 = 0.5 ** 0.5  # normalised by the group std (G = 2: |A| / (sqrt(2) |A|))


@pytest.mark.parametrize("kind, extra, expected", [
    ("conservative", {}, [[0.0, 3.0], [0.0, -3.0]]),
    ("vanilla", {}, [[0.75, 9.0], [-0.75, -9.0]]),
    ("vanilla", {"adv_clip_min": 0.0}, [[0.75, 9.0], [0.0, 0.0]]),  # OGPO-NN
    ("vanilla", {"normalize_group": True}, [[R2, R2], [-R2, -R2]]),
    ("conservative", {"normalize_group": True}, [[0.0, R2], [0.0, -R2]]),
])
@pytest.mark.parametrize("mbc", [0, 2])  # one slice of the group, or one member per slice
def test_group_advantages_are_the_configured_kind_of_target_critic_scores(kind, extra, expected, mbc):
    algo = make(advantage=kind, microbatch_chains=mbc, **extra)
    algo.critic_target = QuadQ()
    algo.critic = QuadQ(x_star=(0.5, 0.5), c=(100.0, -100.0))  # the online critic must not be read here
    actions = X[..., None, None].expand(2, 2, H, DA).contiguous()
    q, adv, stats = algo._group_advantages(torch.zeros(2, OBS), actions, algo._slices(2))
    torch.testing.assert_close(q, Q_EXPECTED)
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    assert stats["actor/adv_zero_frac"] == pytest.approx((torch.tensor(expected) == 0).float().mean().item())


def test_imagination_and_old_logprobs_come_from_the_ema_actor(monkeypatch):
    """With the online actor moved away from the EMA actor: the chains (and returned actions) are the EMA actor's
    SDE samples on the training generator, their old log-probs the EMA actor's, the new ones the online actor's
    (ratio != 1), and the advantage fed to the PPO loss is the target critic's on those actions."""
    algo = make(group_size=4)
    perturb(algo.actor)
    algo.critic_target = QuadQ()
    S = torch.randn(3, OBS, generator=torch.Generator().manual_seed(2))
    seen = []
    real_loss = ogpo_mod.ppo_clip_loss

    def spy(logp, old_logp, adv, eps):
        seen.append((logp.detach(), old_logp, adv))
        return real_loss(logp, old_logp, adv, eps)

    monkeypatch.setattr(ogpo_mod, "ppo_clip_loss", spy)
    state = algo.gen.get_state()
    stats, actions, _ = algo._ppo_loss(S)
    ema = algo.actor_target.sample_sde(S, 4, generator=torch.Generator().set_state(state))  # the same draws
    online = algo.actor.sample_sde(S, 4, generator=torch.Generator().set_state(state))
    torch.testing.assert_close(actions, ema.actions, rtol=0, atol=1e-6)
    assert not torch.allclose(actions, online.actions, atol=1e-3)
    logp, old, adv = (torch.cat(x) for x in zip(*seen))
    ref = ogpo_mod.advantages(QuadQ()(S.expand(4, 3, OBS), ema.actions).transpose(0, 1), "conservative")  # [G, B]
    live = ref != 0  # the loss sees the chains of nonzero advantage only (the others add nothing to it)
    assert 0 < live.sum() < live.numel()
    torch.testing.assert_close(old, algo.actor_target.log_prob(S, ema.chain)[live], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logp, algo.actor.log_prob(S, ema.chain)[live], rtol=1e-5, atol=1e-6)
    assert (logp - old).abs().max() > 1e-3 and abs(stats["actor/ratio_mean"] - 1.0) > 1e-4
    torch.testing.assert_close(adv, ref[live])


def test_ode_group_extractions_sample_from_the_ema_actor():
    """AWR-FM / FPO: the G ODE samples per state are the EMA actor's (the reference's `_sample_actions_ode`)."""
    algo = make("ogpo-plus", extraction="awr_fm", group_size=3, n_mc=2)
    perturb(algo.actor)
    algo.critic_target = QuadQ()
    S = torch.randn(2, OBS, generator=torch.Generator().manual_seed(3))
    state = algo.gen.get_state()
    _, actions, _ = algo._ode_group_loss(S)
    rep = S.unsqueeze(0).expand(3, 2, OBS).reshape(6, OBS)
    ema = algo.actor_target.sample_ode(rep, generator=torch.Generator().set_state(state)).unflatten(0, (3, 2))
    online = algo.actor.sample_ode(rep, generator=torch.Generator().set_state(state)).unflatten(0, (3, 2))
    torch.testing.assert_close(actions, ema, rtol=0, atol=1e-6)
    assert not torch.allclose(actions, online, atol=1e-3)


# ------------------------------------------------------------------------------------------- critic / TD
def td_batch() -> ChunkBatch:
    """Two chunks: one of four -1 rewards inside an episode (bootstraps with gamma^4), one that terminates at its
    second step (-1, 0, then invalid: no bootstrap)."""
    return ChunkBatch(
        obs=torch.randn(2, OBS, generator=torch.Generator().manual_seed(4)), actions=torch.zeros(2, H, DA),
        rewards=torch.tensor([[-1.0, -1, -1, -1], [-1, 0, 0, 0]]),
        terminals=torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0]]), ends=torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0]]),
        valid=torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]]), boot_obs=torch.randn(2, OBS))


@pytest.mark.parametrize("agg, next_q", [("mean", 4.0), ("min", 2.0)])
@pytest.mark.parametrize("drop_partial", [True, False])
def test_td_target_bootstraps_from_the_target_critic(agg, next_q, drop_partial):
    """gamma = 0.5: y = (-1.875 + 0.5^4 agg_m Qbar_m, -1); target heads read (2, 6), online heads (-40, -40). The
    online critic then regresses on y: loss = mean over heads of its weighted squared error."""
    algo = make(gamma=0.5, target_agg=agg, drop_partial_chunks=drop_partial, tau_critic=0.2, tau_actor=0.05)
    const_critic(algo.critic_target, (2.0, 6.0))
    const_critic(algo.critic, (-40.0, -40.0))
    old_target = [p.detach().clone() for p in algo.critic_target.parameters()]
    stats = algo.critic_step(td_batch())
    y = torch.tensor([-1.875 + 0.0625 * next_q, -1.0])
    assert stats["critic/target_mean"] == pytest.approx(y.mean().item(), abs=1e-6)
    err = (-40.0 - y) ** 2
    assert stats["critic/loss"] == pytest.approx(err[0].item() if drop_partial else err.mean().item(), rel=1e-6)
    assert stats["critic/q_mean"] == pytest.approx(-40.0)
    # Polyak: target <- target + tau (online_after_step - target), parameters only
    tau = algo.cfg.tau_critic
    for t_new, t_old, o in zip(algo.critic_target.parameters(), old_target, algo.critic.parameters()):
        torch.testing.assert_close(t_new, t_old + tau * (o.detach() - t_old), rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(old_target, algo.critic_target.parameters()))


def test_td_next_action_is_an_ema_actor_sample():
    """The bootstrap action a' ~ one SDE sample of the EMA actor at boot_obs, on the training generator."""
    algo = make(gamma=0.5)
    perturb(algo.actor)
    seen = {}
    real = algo.fast.score

    def spy(critic, obs, actions):
        seen["critic"], seen["obs"], seen["actions"] = critic, obs, actions
        return real(critic, obs, actions)

    algo.fast.score = spy
    batch, state = td_batch(), algo.gen.get_state()
    algo.critic_step(batch)
    ema = algo.actor_target.sample_sde(batch.boot_obs, 1, generator=torch.Generator().set_state(state)).actions[0]
    assert seen["critic"] is algo.critic_target and torch.equal(seen["obs"], batch.boot_obs)
    torch.testing.assert_close(seen["actions"], ema, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------- BC term
def labelled_buffer(outcomes=("fail", "success", "fail", "success"), T=8) -> ReplayBuffer:
    """One env, episodes of T steps; every obs of a successful episode is +3, of a failed one -3."""
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(1, 400, OBS, DA, H, seed=0)
    for outcome in outcomes:
        v = 3.0 if outcome == "success" else -3.0
        for t in range(T):
            last = t == T - 1
            buf.add_batch(np.full((1, OBS), v), rng.uniform(-1, 1, (1, DA)), [-1.0], [last and v > 0],
                          [last and v < 0], np.full((1, OBS), v), [last and v > 0])
    return buf


def spy_cfm(algo) -> list:
    seen, real = [], algo.fast.cfm_loss

    def spy(policy, obs, actions, valid, generator):
        seen.append((policy, obs, actions))
        return real(policy, obs, actions, valid, generator)

    algo.fast.cfm_loss = spy
    return seen


@pytest.mark.parametrize("source, outcomes, from_success", [
    ("success", ("fail", "success", "fail", "success"), True),
    ("success", ("fail", "fail", "fail"), False),  # no success yet: the replay batch (the reference's fallback)
    ("replay", ("fail", "success", "fail", "success"), False),
])
def test_cloning_term_trains_on_the_success_buffer(source, outcomes, from_success):
    algo = make(bc_source=source, batch_size=32, ppo_batch_size=4, group_size=2, tau_actor=0.3, tau_critic=0.05)
    buf = labelled_buffer(outcomes)
    seen = spy_cfm(algo)
    batch = buf.sample(32)
    old_target = [p.detach().clone() for p in algo.actor_target.parameters()]
    stats = algo.actor_step(batch.obs[:4], buf, batch)
    (policy, obs, _), = seen
    assert policy is algo.actor and stats["actor/bc_on_success"] == float(from_success)
    if from_success:
        assert obs.shape == (32, OBS) and (obs == 3.0).all()
    else:
        assert torch.equal(obs, batch.obs) and (batch.obs == -3.0).any()
    # the EMA actor follows the stepped online actor by tau_actor
    tau = algo.cfg.tau_actor
    for t_new, t_old, o in zip(algo.actor_target.parameters(), old_target, algo.actor.parameters()):
        torch.testing.assert_close(t_new, t_old + tau * (o.detach() - t_old), rtol=1e-5, atol=1e-6)


def test_no_cloning_term_without_bc_coeff():
    algo = make("ogpo-ca", batch_size=16, ppo_batch_size=4, group_size=2)
    assert algo.cfg.bc_coeff == 0
    buf = labelled_buffer()
    seen = spy_cfm(algo)
    batch = buf.sample(16)
    stats = algo.actor_step(batch.obs[:4], buf, batch)
    assert seen == [] and "actor/bc_loss" not in stats


# ------------------------------------------------------------------------------------------- acting
def test_acting_samplers_use_the_right_networks():
    """sde: one sample of the EMA actor; ode: the online actor's Euler ODE; bon: the EMA actor's N samples, the
    argmax of the target critic (the online critic prefers other chunks); critic_values reads the target critic."""
    algo = make(best_of_n=6, bon_agg="mean")
    perturb(algo.actor)
    algo.critic_target = QuadQ(x_star=(0.2, 0.2), c=(0.0, 1.0))
    algo.critic = QuadQ(x_star=(-0.9, -0.9), c=(0.0, 0.0))
    obs = torch.randn(5, OBS, generator=torch.Generator().manual_seed(5))
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    sde = algo.act(obs, "sde", generator=g())
    torch.testing.assert_close(sde, algo.actor_target.sample_sde(obs, 1, generator=g()).actions[0], rtol=0, atol=0)
    ode = algo.act(obs, "ode", generator=g())
    torch.testing.assert_close(ode, algo.actor.sample_ode(obs, generator=g()), rtol=0, atol=0)
    bon = algo.act(obs, "bon", generator=g())
    cands = algo.actor_target.sample_sde(obs, 6, generator=g()).actions  # [6, 5, H, Da]
    score = -((cands - 0.2) ** 2).sum((-2, -1))  # target heads differ by a constant: same argmax for any agg
    best = score.argmax(0)
    torch.testing.assert_close(bon, cands[best, torch.arange(5)], rtol=0, atol=0)
    assert (best != (-((cands + 0.9) ** 2).sum((-2, -1))).argmax(0)).any()  # the online critic would pick others
    torch.testing.assert_close(algo.critic_values(obs, sde), QuadQ(x_star=(0.2, 0.2), c=(0.0, 1.0))(obs, sde))
