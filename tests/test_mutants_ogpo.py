"""Known-answer tests of algos/ogpo.py that kill the behaviour-changing survivors of mutation testing (issue 22,
benchmarks/mutation.sh; docs/testing.md lists what survives and why it is equivalent).

Each update path is compared with a reference written from the objective functions on the same random draws (the
training generator's state is replayed): the actor's gradient and every logged statistic, keys included (the
metric names are the CSV columns that the reports and docs read). The group is split into uneven micro-batches
where the path slices it, so the reference, computed on the whole group at once, also checks the slice weighting.
Tiny networks; the whole file runs in seconds.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_mechanisms import DA, H, OBS, QuadQ, const_critic, labelled_buffer, make, perturb, td_batch

from flowft.algos.base import DivergenceError
from flowft.critics.ensemble import CriticConfig
from flowft.objectives.advantages import advantages
from flowft.objectives.awr import awr_fm_loss, awr_weights
from flowft.objectives.bptt import bptt_actor_loss
from flowft.objectives.fpo import cfm_mc_losses, fpo_clip_loss, fpo_log_ratio
from flowft.objectives.ppo import group_slices, ppo_clip_loss, ratio_stats
from flowft.types import ChunkBatch
from flowft.utils.schedules import restarting_warmup_cosine

Q4 = dict(x_star=(0.0, 1.0, -1.0, 0.5), c=(0.0, 3.0, 1.0, -2.0))  # 4 heads: `subsample` picks a real pair


def states(B: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(B, OBS, generator=torch.Generator().manual_seed(seed))


def replay(gen: torch.Generator) -> torch.Generator:
    return torch.Generator().set_state(gen.get_state())


def grads(algo) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in algo.actor.parameters()]


def ref_grads(loss, module) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for p, g in
            zip(module.parameters(), torch.autograd.grad(loss, list(module.parameters()), allow_unused=True))]


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert any(w.abs().max() > 0 for w in want)  # a gradient that is there to be compared
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def group_stats(q: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
    """_group_advantages' statistics, from q [G, M, B] and adv [G, B]."""
    return {"actor/adv_abs_mean": adv.abs().mean().item(), "actor/adv_std": adv.std().item(),
            "actor/adv_zero_frac": (adv == 0).float().mean().item(), "actor/q_imagined_mean": q.mean().item(),
            "actor/q_disagreement": q.std(1).mean().item()}


def assert_stats(got: dict, want: dict) -> None:
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k


def scores(algo, S: torch.Tensor, actions: torch.Tensor):
    """Target-critic scores of the group [G, B, H, Da] -> (q [G, M, B], adv [G, B]) as configured."""
    G, cfg = actions.shape[0], algo.cfg
    q = algo.critic_target(S.unsqueeze(0).expand(G, *S.shape), actions).transpose(0, 1)
    adv = advantages(q, cfg.advantage, cfg.normalize_group)
    return q, adv if cfg.adv_clip_min is None else adv.clamp_min(cfg.adv_clip_min)


# ------------------------------------------------------------------------------------- PPO / AW-OGPO
@pytest.mark.parametrize("extraction, extra", [
    ("ppo", {"advantage": "vanilla", "microbatch_chains": 6}),  # B = 3: slices of 2 group members
    # sign consensus zeroes some advantages: the loss skips those chains, the gradient and statistics must not change
    ("ppo", {"advantage": "conservative", "microbatch_chains": 6, "ratio_stats": "all"}),
    # the default statistics: over the chains of nonzero advantage only (the others get no log-prob forward)
    ("ppo", {"advantage": "conservative", "microbatch_chains": 6, "ratio_stats": "live", "clip_eps": 0.05}),
    ("awr", {"advantage": "vanilla", "awr_mode": "asymmetric", "awr_beta": 0.5, "awr_beta_neg": 2.0}),
])
def test_ppo_loss_gradient_and_stats_match_the_whole_group_reference(extraction, extra):
    algo = make("ogpo-plus", extraction=extraction, group_size=4, **{"clip_eps": 0.02, **extra})
    perturb(algo.actor, 0.05)
    algo.critic_target = QuadQ()
    S, cfg = states(3), algo.cfg
    gen = replay(algo.gen)
    stats, actions, _ = algo._ppo_loss(S)
    im = algo.actor_target.sample_sde(S, 4, generator=gen)
    q, adv = scores(algo, S, im.actions)
    w = adv if extraction == "ppo" else awr_weights(adv, cfg.awr_beta, cfg.awr_mode, cfg.awr_weight_max, 2.0)
    logp = algo.actor.log_prob(S, im.chain)
    loss = ppo_clip_loss(logp, im.logp, w, cfg.clip_eps)
    log_r = logp.detach() - im.logp  # [G, B]
    log_r = log_r[w != 0] if cfg.ratio_stats == "live" else log_r
    want = {**group_stats(q, adv), "actor/pg_loss": loss.item(),
            **{f"actor/{k}": v for k, v in ratio_stats(log_r, cfg.clip_eps).items()}}
    if extraction == "awr":
        want.update({"actor/awr_weight_mean": w.mean().item(), "actor/awr_weight_max": w.max().item()})
        assert (w != 1).all() and (adv < 0).any()  # beta_neg shapes the weights of A <= 0
    else:
        assert len(algo._slices(3)) == 2
        assert cfg.advantage == "vanilla" or 0 < (adv == 0).sum() < adv.numel()
    assert_stats(stats, want)
    assert 0 < want["actor/clip_frac"] < 1  # both clipped and unclipped chains
    torch.testing.assert_close(actions, im.actions)
    assert_same(grads(algo), ref_grads(loss, algo.actor))


@pytest.mark.parametrize("ratio_stats_over, every", [("live", False), ("all", True)])
def test_ppo_loss_runs_the_log_prob_of_zero_advantage_chains_only_for_all_chain_statistics(ratio_stats_over, every):
    """ratio_stats live: the teacher-forced log-prob sees exactly the chains of nonzero advantage (one call, with a
    graph); all: also the others, in a second, no-grad call."""
    algo = make("ogpo-plus", group_size=4, advantage="conservative", ratio_stats=ratio_stats_over)
    perturb(algo.actor, 0.05)
    algo.critic_target = QuadQ()
    S, calls = states(3), []
    real = algo.fast.log_prob
    algo.fast.log_prob = lambda policy, obs, chain: calls.append((chain.shape[:2], torch.is_grad_enabled())) or \
        real(policy, obs, chain)
    gen = replay(algo.gen)
    algo._ppo_loss(S)
    _, adv = scores(algo, S, algo.actor_target.sample_sde(S, 4, generator=gen).actions)
    n = int((adv != 0).sum())
    assert 0 < n < adv.numel()
    want = [((1, adv.numel() - n), False)] if every else []
    assert calls == want + [((1, n), True)]


@pytest.mark.parametrize("ratio_stats_over, every", [("live", False), ("all", True)])
def test_bf16_old_log_probs_take_the_new_ones_calls_and_skip_zero_advantage_chains(ratio_stats_over, every):
    """A chain imagined in bf16 gets its old log-prob from the EMA actor's teacher-forced log-prob (the ratio must be
    exactly 1 at theta = theta_old): through the same calls as the new log-probs (rows, shapes, precision), so the
    chains of zero advantage skip both, and at theta = theta_old every logged ratio is exactly 1. The gradient is
    the unpadded reference's (test_ppo_loss_gradient_and_stats_match_the_whole_group_reference, fp32)."""
    from flowft.train.fastpath import ROW_BUCKET, UpdatePath

    algo = make("ogpo-plus", group_size=4, advantage="conservative", ratio_stats=ratio_stats_over)
    algo.fast = UpdatePath(algo.device, None, "bf16")  # eager bf16 autocast (emulated where the CPU has no bf16)
    algo.critic_target = QuadQ()
    S, calls = states(3), []
    real = algo.fast.log_prob
    algo.fast.log_prob = lambda policy, obs, chain: calls.append(
        (policy is algo.actor_target, chain.shape[:2], torch.is_grad_enabled())) or real(policy, obs, chain)
    gen = replay(algo.gen)
    stats, _, _ = algo._ppo_loss(S)  # actor == EMA actor: theta = theta_old
    _, adv = scores(algo, S, algo.actor_target.sample_sde(S, 4, generator=gen).actions)
    n = int((adv != 0).sum())
    assert 0 < n < adv.numel()
    rows = lambda m: -(-m // ROW_BUCKET) * ROW_BUCKET  # noqa: E731 (bf16 pads a subset's rows: one kernel per bucket)
    others = [((1, rows(adv.numel() - n)), False)] if every else []
    live = (1, rows(n))
    assert calls == [(False, *c) for c in [*others, (live, True)]] + [(True, *c) for c in [*others, (live, False)]]
    assert (stats["actor/ratio_mean"], stats["actor/ratio_max"], stats["actor/approx_kl"]) == (1.0, 1.0, 0.0)
    assert stats["actor/clip_frac"] == 0.0


# ------------------------------------------------------------------------------------- AWR-FM / FPO
def ref_ode_loss(algo, S: torch.Tensor, gen: torch.Generator):
    """The whole group's AWR-FM / FPO loss on the draws the sliced path makes (tau, eps per slice, concatenated)."""
    cfg, (G, B), n = algo.cfg, (algo.cfg.group_size, S.shape[0]), algo.cfg.n_mc
    S_rep = S.unsqueeze(0).expand(G, B, OBS)
    actions = algo.actor_target.sample_ode(S_rep.reshape(G * B, -1), generator=gen).unflatten(0, (G, B))
    q, adv = scores(algo, S, actions)
    x1 = algo.actor.normalize_actions(actions).reshape(G * B, -1)  # [G*B, d], group-major
    draws = [(torch.rand(n, len(range(G)[sl]) * B, generator=gen),
              torch.randn(n, len(range(G)[sl]) * B, x1.shape[-1], generator=gen)) for sl in algo._slices(B)]
    tau, eps = torch.cat([t for t, _ in draws], 1), torch.cat([e for _, e in draws], 1)
    obs = S_rep.reshape(G * B, -1).repeat(n, 1)
    fpo = cfg.extraction == "fpo"
    l_new = cfm_mc_losses(algo.actor._velocity_fn(obs), x1, tau, eps, cfg.fpo_huber_delta if fpo else None)
    want = group_stats(q, adv)
    if fpo:
        with torch.no_grad():
            l_old = cfm_mc_losses(algo.actor_target._velocity_fn(obs), x1, tau, eps, cfg.fpo_huber_delta)
        log_r = fpo_log_ratio(l_old, l_new, cfg.fpo_per_sample, cfg.fpo_loss_clamp, cfg.fpo_diff_clamp)
        loss = fpo_clip_loss(log_r, adv.reshape(-1), cfg.clip_eps, cfg.fpo_aspo)
        want.update({f"actor/{k}": v for k, v in ratio_stats(log_r, cfg.clip_eps).items()})
        extra = (l_old, l_new, log_r)
    else:
        w = awr_weights(adv, cfg.awr_beta, cfg.awr_mode, cfg.awr_weight_max, cfg.awr_beta_neg)
        loss = awr_fm_loss(l_new.view(n, G, B), w)
        want.update({"actor/awr_weight_mean": w.mean().item(), "actor/awr_weight_max": w.max().item()})
        extra = (w, adv)
    want["actor/pg_loss"] = loss.item()
    return loss, want, actions, extra


ODE_CASES = [  # G = 3, B = 2, microbatch_chains 4: uneven slices of 2 and 1 group members
    ("awr_fm", dict(awr_mode="asymmetric", awr_beta=0.5, awr_beta_neg=2.0, fpo_huber_delta=0.05)),
    ("fpo", dict(fpo_per_sample=True, fpo_aspo=True, fpo_huber_delta=0.3, fpo_loss_clamp=5.5, fpo_diff_clamp=0.2)),
    ("fpo", dict(fpo_per_sample=False, fpo_aspo=False, fpo_huber_delta=None, fpo_loss_clamp=12.0,
                 fpo_diff_clamp=5.0)),
]


@pytest.mark.parametrize("extraction, extra", ODE_CASES)
def test_ode_group_loss_gradient_and_stats_match_the_whole_group_reference(extraction, extra):
    algo = make("ogpo-plus", extraction=extraction, group_size=3, n_mc=3, microbatch_chains=4, clip_eps=0.1,
                advantage="vanilla", **extra)
    perturb(algo.actor, 0.05)
    algo.critic_target = QuadQ()
    S = states(2)
    assert [len(range(3)[sl]) for sl in algo._slices(2)] == [2, 1]
    gen = replay(algo.gen)
    stats, actions, _ = algo._ode_group_loss(S)
    loss, want, ref_actions, extra_out = ref_ode_loss(algo, S, gen)
    assert_stats(stats, want)
    torch.testing.assert_close(actions, ref_actions)
    assert_same(grads(algo), ref_grads(loss, algo.actor))
    if extraction == "fpo":  # the configured clamps are active, so each knob shapes the ratio
        l_old, l_new, log_r = extra_out
        assert 0 < want["actor/clip_frac"] < 1
        if extra["fpo_per_sample"]:
            assert (log_r.abs() == extra["fpo_diff_clamp"]).any() and (log_r.abs() < extra["fpo_diff_clamp"]).any()
            assert (l_new > 5.5).any() and (l_new < 5.5).any()
        else:
            assert log_r.shape[0] == 1 and (l_new > 12.0).any() and (l_new < 12.0).any()
    else:
        w, adv = extra_out
        assert (adv < 0).any() and (w[adv <= 0] != 1).all()


# ------------------------------------------------------------------------------------- BPTT
@pytest.mark.parametrize("agg", ["subsample", "mean"])
def test_bptt_loss_backpropagates_the_aggregated_target_q_through_the_ode(agg):
    algo = make("ogpo-plus", extraction="bptt", bptt_samples=3, target_agg=agg)
    perturb(algo.actor, 0.05)
    algo.critic_target = QuadQ(**Q4)
    S = states(2)
    gen, heads = replay(algo.gen), replay(algo.head_gen)
    stats, actions, _ = algo._bptt_loss(S)
    x0 = torch.randn(3, 2, algo.actor.flat_dim, generator=gen)
    loss, ref_actions, q = bptt_actor_loss(algo.actor, QuadQ(**Q4), S, x0, agg, heads)
    assert_stats(stats, {"actor/pg_loss": loss.item(), "actor/q_imagined_mean": q.mean().item()})
    torch.testing.assert_close(actions, ref_actions.detach())
    assert_same(grads(algo), ref_grads(loss, algo.actor))
    assert torch.equal(algo.head_gen.get_state(), heads.get_state())  # subsample drew its pair from the head generator


# ------------------------------------------------------------------------------------- actor_step
def test_actor_step_sums_the_cloning_term_steps_adamw_on_the_schedule_and_logs_it():
    """ppo + bc on the replay batch: the stepped gradient is grad(pg + bc_coeff * cfm on the batch, valid-masked),
    the lr is the schedule at actor_steps (not the constructor's), and the logged numbers are these."""
    algo = make("ogpo-plus", group_size=2, bc_source="replay", bc_coeff=0.7, lr_warmup=10, lr_cycle=100,
                actor_lr=1e-3, actor_lr_floor=1e-4, weight_decay=0.25)
    perturb(algo.actor, 0.05)
    algo.critic_target = QuadQ()
    algo.actor_steps = 4
    batch = labelled_buffer().sample(8)
    batch = ChunkBatch(**{**batch.__dict__, "valid": torch.tensor([[1.0, 1, 0, 0]] * 8)})  # masks half the chunk
    S, gen, cfg = batch.obs[:3], replay(algo.gen), algo.cfg
    actor0, target0 = copy.deepcopy(algo.actor), copy.deepcopy(algo.actor_target)  # before the step
    seen = {}
    real_step = algo.actor_opt.step

    def step(*a, **k):
        seen["grads"], seen["lr"] = grads(algo), algo.actor_opt.param_groups[0]["lr"]
        return real_step(*a, **k)

    algo.actor_opt.step = step
    stats = algo.actor_step(S, None, batch)  # no buffer read: the replay source uses the batch
    im = target0.sample_sde(S, 2, generator=gen)
    _, adv = scores(algo, S, im.actions)
    pg = ppo_clip_loss(actor0.log_prob(S, im.chain), im.logp, adv, cfg.clip_eps)
    at_bc = gen.get_state()
    bc = actor0.cfm_loss(batch.obs, batch.actions, batch.valid, generator=gen)
    g_ref = ref_grads(pg + 0.7 * bc, actor0)
    assert_same(seen["grads"], g_ref)
    lr = restarting_warmup_cosine(4, 1e-3, 1e-4, 10, 100)
    assert seen["lr"] == pytest.approx(lr) and lr != pytest.approx(1e-3)
    assert stats["actor/lr"] == pytest.approx(lr) and algo.actor_steps == 5
    assert stats["actor/bc_loss"] == pytest.approx(bc.item(), rel=1e-5)
    assert stats["actor/bc_on_success"] == 0.0
    assert stats["actor/grad_norm"] == pytest.approx(torch.cat([g.flatten() for g in g_ref]).norm().item(), rel=1e-4)
    unmasked = actor0.cfm_loss(batch.obs, batch.actions, None, generator=torch.Generator().set_state(at_bc))
    assert bc.item() != pytest.approx(unmasked.item(), rel=1e-3)  # the mask matters here


@pytest.mark.parametrize("grad_steps, logged", [(0, True), (1, False), (2, True), (3, False)])
def test_grad_q_variance_diagnostic_every_n_updates(grad_steps, logged):
    algo = make("ogpo-plus", group_size=3, grad_diag_every=2, bc_coeff=0.0)
    algo.critic_target = QuadQ()
    algo.grad_steps = grad_steps
    stats = algo.actor_step(states(2), None, None)
    diag = {"actor/var_along_gradq", "actor/var_orth_gradq"}
    assert (diag <= set(stats)) == logged and (not logged or not diag & set(stats) - diag)
    assert set(stats) - diag == {"actor/adv_abs_mean", "actor/adv_std", "actor/adv_zero_frac",
                                 "actor/q_imagined_mean", "actor/q_disagreement", "actor/ratio_mean",
                                 "actor/ratio_max", "actor/clip_frac", "actor/approx_kl", "actor/pg_loss",
                                 "actor/grad_norm", "actor/lr"}
    if logged:
        assert stats["actor/var_along_gradq"] > 0 and stats["actor/var_orth_gradq"] > 0


# ------------------------------------------------------------------------------------- critic_step
def test_critic_step_weights_only_full_chunks_and_logs_head_spread():
    """Three chunks, gamma 0.5, target heads (2, 6) mean 4, online heads (-40, -20): the third chunk ends at its
    last step (valid 1, 1, 1, 0; truncated, so it bootstraps with gamma^3). drop_partial_chunks keeps only chunk 0."""
    algo = make(gamma=0.5, drop_partial_chunks=True)
    const_critic(algo.critic_target, (2.0, 6.0))
    const_critic(algo.critic, (-40.0, -20.0))
    b = td_batch()
    batch = ChunkBatch(obs=torch.cat([b.obs, b.obs[:1]]), actions=torch.zeros(3, H, DA),
                       rewards=torch.tensor([[-1.0, -1, -1, -1], [-1, 0, 0, 0], [-1, -1, -1, 0]]),
                       terminals=torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]),
                       ends=torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
                       valid=torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]),
                       boot_obs=torch.randn(3, OBS))
    stats = algo.critic_step(batch)
    y = torch.tensor([-1.875 + 0.0625 * 4, -1.0, -1.75 + 0.125 * 4])
    assert stats["critic/target_mean"] == pytest.approx(y.mean().item(), abs=1e-6)
    assert stats["critic/loss"] == pytest.approx(((-40 - y[0]) ** 2 + (-20 - y[0]) ** 2).item() / 2, rel=1e-6)
    assert stats["critic/q_mean"] == pytest.approx(-30.0)
    assert stats["critic/q_std_heads"] == pytest.approx(20 / math.sqrt(2), rel=1e-6)  # unbiased std of 2 heads
    assert set(stats) == {"critic/loss", "critic/q_mean", "critic/q_std_heads", "critic/target_mean"}


def test_critic_step_subsample_picks_the_pair_with_the_head_generator():
    algo = make(gamma=0.5, target_agg="subsample", critic=CriticConfig(num_heads=4, hidden=(16, 16)))
    values = (5.0, 1.0, 7.0, 3.0)
    const_critic(algo.critic_target, values)
    heads = replay(algo.head_gen)
    stats = algo.critic_step(td_batch())
    pair = torch.randperm(4, generator=heads)[:2]
    next_q = min(values[i] for i in pair.tolist())
    assert stats["critic/target_mean"] == pytest.approx((-1.875 + 0.0625 * next_q - 1.0) / 2, abs=1e-6)
    assert torch.equal(algo.head_gen.get_state(), heads.get_state())  # the same draws were used


# ------------------------------------------------------------------------------------- update
def spy_critic_steps(algo) -> list:
    calls, real = [], algo.critic_step

    def spy(batch):
        out = real(batch)
        calls.append((batch, out))
        return out

    algo.critic_step = spy
    return calls


@pytest.mark.parametrize("flag, outcomes, second", [
    (True, ("fail", "success", "fail"), True),
    (False, ("fail", "success", "fail"), False),
    (True, ("fail", "fail"), False),  # no success yet: one step on the replay batch only
])
def test_update_success_critic_step(flag, outcomes, second):
    algo = make("ogpo-plus", success_critic_step=flag, batch_size=16, ppo_batch_size=4, group_size=2,
                bc_source="replay", critic_warmup=1)
    buf = labelled_buffer(outcomes)
    calls = spy_critic_steps(algo)
    stats = algo.update(buf)
    assert len(calls) == 1 + second and calls[0][0].obs.shape == (16, OBS)
    assert not any(k.startswith("actor/") for k in stats) and algo.grad_steps == 1  # critic warm-up
    if second:
        batch, out = calls[1]
        assert batch.obs.shape == (16, OBS) and (batch.obs == 3.0).all()  # success episodes only
        assert stats["critic/sb_loss"] == out["critic/loss"] and stats["critic/loss"] == calls[0][1]["critic/loss"]
    else:
        assert "critic/sb_loss" not in stats
    stats = algo.update(buf)  # past the warm-up: the actor step, its cloning term on this update's replay batch
    assert stats["actor/bc_on_success"] == 0.0 and "actor/pg_loss" in stats


def test_actor_every_delays_the_actor_not_the_critic():
    """After a 2-update critic warm-up, actor_every 3 steps the actor on updates 2, 5, 8 (its lr clock counts only
    those) and the critic on all nine; the actor's weights move only on those updates."""
    algo = make("ogpo-plus", critic_warmup=2, actor_every=3, batch_size=16, ppo_batch_size=4, group_size=2,
                bc_source="replay")
    buf, calls = labelled_buffer(), spy_critic_steps(algo)
    stepped = []
    for i in range(9):
        before = [p.detach().clone() for p in algo.actor.parameters()]
        stats = algo.update(buf)
        moved = any(not torch.equal(b, p) for b, p in zip(before, algo.actor.parameters()))
        assert moved == ("actor/pg_loss" in stats), i
        stepped.append(moved)
    assert [i for i, s in enumerate(stepped) if s] == [2, 5, 8]
    assert algo.actor_steps == 3 and algo.grad_steps == 9 and len(calls) == 9


def test_update_names_the_update_when_a_statistic_is_not_finite():
    algo = make(critic_warmup=5)
    algo.critic_step = lambda batch: {"critic/loss": float("nan")}
    with pytest.raises(DivergenceError, match=r"ogpo update 1: non-finite \['critic/loss'\]"):
        algo.update(labelled_buffer())


# ------------------------------------------------------------------------------------- construction, state
def test_construction_targets_frozen_optimizers_configured():
    algo = make(actor_lr=2e-4, critic_lr=3e-3, weight_decay=0.125)
    assert (algo.act_dim, algo.chunk_len, algo.obs_dim) == (DA, H, OBS)
    assert all(p.requires_grad for p in algo.actor.parameters())
    assert not any(p.requires_grad for m in (algo.actor_target, algo.critic_target) for p in m.parameters())
    for opt, lr, module in ((algo.actor_opt, 2e-4, algo.actor), (algo.critic_opt, 3e-3, algo.critic)):
        assert isinstance(opt, torch.optim.AdamW)
        assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["weight_decay"] == 0.125
        assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in module.parameters()}
    assert algo.modules() == {"actor": algo.actor, "actor_target": algo.actor_target, "critic": algo.critic,
                              "critic_target": algo.critic_target}
    assert algo.optimizers() == {"actor": algo.actor_opt, "critic": algo.critic_opt}


def test_init_from_bc_loads_both_actors_and_the_critics_normalisers():
    algo, bc = make(), make().actor
    perturb(bc, 0.3, seed=7)
    with torch.no_grad():
        bc.obs_normalizer.shift.fill_(0.5)
    algo.init_from_bc(bc.state_dict())
    for actor in (algo.actor, algo.actor_target):
        for (k, v), w in zip(actor.state_dict().items(), bc.state_dict().values()):
            torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    for critic in (algo.critic, algo.critic_target):
        torch.testing.assert_close(critic.obs_normalizer.shift, bc.obs_normalizer.shift, rtol=0, atol=0)


@pytest.mark.parametrize("state, warmup, actor_steps", [
    ({"grad_steps": 7, "actor_steps": 3}, 5, 3),
    ({"grad_steps": 7}, 5, 2),  # a checkpoint from before actor_steps: every update past the warm-up
    ({"grad_steps": 7}, 10, 0),
])
def test_load_extra_state_restores_the_actor_clock(state, warmup, actor_steps):
    algo = make(critic_warmup=warmup)
    algo.load_extra_state(state)
    assert algo.grad_steps == 7 and algo.actor_steps == actor_steps


@pytest.mark.parametrize("mbc, B, sizes", [(None, 600, [1, 1, 1, 1]), (2, 1, [2, 2]), (0, 600, [4])])
def test_slices_follow_the_configured_microbatch(mbc, B, sizes):
    algo = make(group_size=4, microbatch_chains=mbc)
    assert [len(range(4)[sl]) for sl in algo._slices(B)] == sizes
    assert algo._slices(B) == group_slices(4, B, mbc, "cpu")


@pytest.mark.parametrize("extraction, own", [
    ("ppo", {"actor/ratio_mean", "actor/adv_std"}),
    ("awr", {"actor/ratio_mean", "actor/awr_weight_mean", "actor/adv_std"}),
    ("awr_fm", {"actor/awr_weight_mean", "actor/adv_std"}),
    ("fpo", {"actor/ratio_mean", "actor/adv_std"}),
    ("bptt", {"actor/q_imagined_mean"}),
])
def test_actor_step_dispatches_every_extraction(extraction, own):
    """actor_step runs the configured objective: its statistics, and not another objective's."""
    algo = make("ogpo-plus", extraction=extraction, group_size=2, n_mc=2, bptt_samples=2, bc_coeff=0.0)
    algo.critic_target = QuadQ()
    stats = algo.actor_step(states(2), None, None)
    others = {"actor/ratio_mean", "actor/awr_weight_mean", "actor/adv_std"} - own
    assert own <= set(stats) and not others & set(stats) and {"actor/pg_loss", "actor/lr"} <= set(stats)
