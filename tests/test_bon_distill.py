"""Best-of-N distillation in OGPO (`--algo.bon-distill-coeff`): the actor step adds a CFM term on the chunk that
Best-of-N acting would execute at each actor state, picked by the target critic among the first `best_of_n` of the
step's own imagined group. Known answers come from a hand-built quadratic critic (QuadQ) whose argmax is the
candidate nearest to its optimum."""

from __future__ import annotations

import copy

import pytest
import torch
from test_mechanisms import QuadQ, labelled_buffer, make, perturb
from test_mutants_ogpo import assert_same, grads, ref_grads, replay, scores, states

from flowft.algos.ogpo_config import OGPOConfig
from flowft.critics.ensemble import pick_best
from flowft.errors import ConfigError
from flowft.objectives.ppo import ppo_clip_loss
from flowft.presets import ogpo_config

X_STAR = 0.2  # both heads of the test critic peak at every chunk entry = 0.2


def distilling(**kw):
    algo = make("ogpo-plus-ca", **{"bc_coeff": 0.0, "bon_agg": "mean", "group_size": 8, "best_of_n": 2,
                                   "bon_distill_coeff": 0.5, **kw})
    perturb(algo.actor, 0.3)
    algo.actor_target = copy.deepcopy(algo.actor).requires_grad_(False)
    algo.critic_target = QuadQ(x_star=(X_STAR, X_STAR), c=(0.0, 1.0))  # heads differ by a constant: one argmax
    return algo


def nearest(cands: torch.Tensor) -> torch.Tensor:
    """The candidate [n, B, H, Da] nearest to X_STAR per state -> [B, H, Da]."""
    best = ((cands - X_STAR) ** 2).sum((-2, -1)).argmin(0)
    return cands[best, torch.arange(cands.shape[1])]


def test_pick_best_returns_the_aggregated_argmax_per_state():
    cands = torch.arange(3 * 2 * 1 * 1, dtype=torch.float32).view(3, 2, 1, 1)  # [n=3, B=2, H=1, Da=1]
    q = torch.tensor([[[1.0, 5.0], [4.0, 0.0], [2.0, 1.0]],
                      [[9.0, 0.0], [0.0, 2.0], [3.0, 0.0]]])  # [M=2, n=3, B=2]
    best, score = pick_best(cands, q, "mean")  # means: state 0 (5, 2, 2.5) -> 0; state 1 (2.5, 1, 0.5) -> 0
    assert torch.equal(best.flatten(), torch.tensor([0.0, 1.0])) and torch.equal(score, q.mean(0))
    best, _ = pick_best(cands, q, "min")  # mins: state 0 (1, 0, 2) -> 2; state 1 (0, 0, 0) -> first, 0
    assert torch.equal(best.flatten(), torch.tensor([4.0, 1.0]))


def test_distillation_clones_the_critics_pick_among_the_first_best_of_n_imagined_chunks():
    algo = distilling()
    buf, S = labelled_buffer(), states(6)
    seen, real = [], algo.fast.cfm_loss
    algo.fast.cfm_loss = lambda policy, obs, actions, valid, gen: seen.append((policy, obs, actions, valid)) or real(
        policy, obs, actions, valid, gen)
    imagined = algo.actor_target.sample_sde(S, 8, generator=replay(algo.gen)).actions  # [G, B, H, Da]
    stats = algo.actor_step(S, buf, buf.sample(16))
    (policy, obs, target, valid), = seen  # bc_coeff = 0: the only CFM call is the distillation
    want = nearest(imagined[:2])
    assert policy is algo.actor and torch.equal(obs, S) and valid is None
    torch.testing.assert_close(target, want, rtol=0, atol=1e-6)
    assert not torch.allclose(want, nearest(imagined))  # picking among the whole group would differ here
    q = -((imagined[:2] - X_STAR) ** 2).sum((-2, -1)) + 0.5  # head mean [n, B]
    assert stats["actor/distill_q_gain"] == pytest.approx((q.max(0).values - q.mean(0)).mean().item(), rel=1e-4)
    assert stats["actor/distill_loss"] > 0


def test_distillation_gradient_is_the_ppo_gradient_plus_coeff_times_the_cfm_gradient():
    algo = distilling(advantage="vanilla")
    buf, S, gen = labelled_buffer(), states(3), replay(algo.gen)
    actor0, target0 = copy.deepcopy(algo.actor), copy.deepcopy(algo.actor_target)  # before the step
    seen, real_step = {}, algo.actor_opt.step
    algo.actor_opt.step = lambda *a, **k: seen.setdefault("grads", grads(algo)) and real_step(*a, **k)
    stats = algo.actor_step(S, buf, buf.sample(16))
    im = target0.sample_sde(S, 8, generator=gen)  # the same draws, in the same order, as the step
    pg = ppo_clip_loss(actor0.log_prob(S, im.chain), im.logp, scores(algo, S, im.actions)[1], algo.cfg.clip_eps)
    cfm = actor0.cfm_loss(S, nearest(im.actions[:2]), None, generator=gen)
    assert stats["actor/distill_loss"] == pytest.approx(cfm.item(), rel=1e-5)
    assert_same(seen["grads"], ref_grads(pg + 0.5 * cfm, actor0))


@pytest.mark.parametrize("grad_steps, distils", [(2, False), (3, True)])
def test_distillation_waits_for_best_of_n_acting(grad_steps, distils):
    algo = distilling(bon_after_updates=3)
    algo.grad_steps = grad_steps
    buf = labelled_buffer()
    stats = algo.actor_step(states(4), buf, buf.sample(16))
    assert ("actor/distill_loss" in stats) == distils


def test_no_distillation_by_default():
    """Off in OGPOConfig and every preset but Can's and Lift's, the tasks where paired runs measured it (results.md
    section 9); the toy algorithm below gets no distillation term."""
    assert OGPOConfig().bon_distill_coeff == 0.0
    assert ogpo_config("ogpo-plus-ca", "toy", "tiny").bon_distill_coeff == 0.0
    assert ogpo_config("ogpo-plus-ca", "door", "tiny").bon_distill_coeff == 0.0
    assert ogpo_config("ogpo-plus-ca", "square", "tiny").bon_distill_coeff == 0.0
    assert ogpo_config("ogpo-plus-ca", "can", "tiny").bon_distill_coeff == 3.0
    assert ogpo_config("ogpo-plus-ca", "lift", "tiny").bon_distill_coeff == 3.0
    for task in ("can", "lift"):
        assert ogpo_config("ogpo-bptt", task, "tiny").bon_distill_coeff == 0.0  # no imagined group to pick from
    algo = make("ogpo-plus-ca", bc_coeff=0.0)
    buf = labelled_buffer()
    stats = algo.actor_step(states(4), buf, buf.sample(16))
    assert not any(k.startswith("actor/distill") for k in stats)


@pytest.mark.parametrize("kw, flag", [
    (dict(bon_distill_coeff=-0.1), "--algo.bon-distill-coeff"),
    (dict(bon_distill_coeff=1.0, best_of_n=1), "--algo.best-of-n"),
    (dict(bon_distill_coeff=1.0, best_of_n=9, group_size=8), "--algo.best-of-n"),
    (dict(bon_distill_coeff=1.0, extraction="bptt", best_of_n=2), "--algo.bon-distill-coeff"),
])
def test_bad_distillation_settings_name_the_field(kw, flag):
    with pytest.raises(ConfigError, match=flag.replace(".", r"\.")):
        make(**kw)
