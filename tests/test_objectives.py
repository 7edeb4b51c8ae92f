"""Advantages and the PPO surrogate against hand-computed answers."""

import dataclasses

import numpy as np
import pytest
import torch

from flowft.algos.ogpo import OGPO
from flowft.objectives.advantages import advantages, consensus_advantage, group_baseline, vanilla_advantage
from flowft.objectives.ppo import group_slices, ppo_clip_loss, ratio_stats
from flowft.presets import ogpo_config
from helpers import random_buffer
from flowft.train.fastpath import PRECISIONS


def test_group_baseline_includes_the_sample_itself():
    q = torch.tensor([[1.0], [2.0], [6.0]])  # [G=3, B=1]
    assert torch.allclose(group_baseline(q), torch.tensor([3.0]))


def test_vanilla_advantage_hand_computed():
    # G=2, M=2, B=1, heads that do not differ by a constant (so mean, min and max over heads all differ):
    # sample 0 reads (0, 4), sample 1 (2, 0): head means (2, 1), baseline 1.5 -> A = (0.5, -0.5)
    # (min over heads would give (0, 0) -> A = 0; max (4, 2) -> A = +-1)
    q = torch.tensor([[[0.0], [4.0]], [[2.0], [0.0]]])
    assert torch.allclose(vanilla_advantage(q), torch.tensor([[0.5], [-0.5]]))
    assert torch.allclose(advantages(q, "vanilla"), torch.tensor([[0.5], [-0.5]]))


@pytest.mark.parametrize(
    "per_head, expected",
    [
        ([0.5, 1.0, 2.0], 0.5),     # all positive -> smallest magnitude
        ([-0.5, -1.0, -2.0], -0.5),  # all negative -> the max (closest to 0)
        ([-0.5, 1.0, 2.0], 0.0),    # disagreement -> 0
        ([0.0, 1.0, 2.0], 0.0),     # a zero head is not strictly positive -> 0
        ([-3.0, 0.0, -1.0], 0.0),
    ],
)
def test_conservative_advantage_truth_table(per_head, expected):
    """Build q so that per-head advantages equal `per_head` for sample 0: sample 1 mirrors it, and every head has its
    own offset, so each head's group baseline is different and non-zero (one shared baseline, or none, would change
    the signs): Q_m = offset_m +- a_m."""
    a = torch.tensor(per_head)  # [M]
    offsets = torch.tensor([-7.0, 2.0, 11.0])
    q = (torch.stack([a, -a]) + offsets).unsqueeze(-1)  # [G=2, M, B=1]; group mean of head m = offset_m
    assert consensus_advantage(q)[0, 0].item() == pytest.approx(expected)
    assert consensus_advantage(q)[1, 0].item() == pytest.approx(-expected)
    assert advantages(q, "conservative")[0, 0].item() == pytest.approx(expected)


def test_conservative_and_vanilla_differ_when_heads_disagree_and_baselines_are_per_head():
    """G=3, M=2, B=1. Head 0 reads (0, 2, 4) (baseline 2), head 1 (30, 10, 20) (baseline 20): per-head A =
    (-2, 0, 2) and (10, -10, 0) -> consensus (0, 0, 0): no sample has all heads agreeing in sign. Vanilla: head
    means (15, 6, 12), baseline 11 -> (4, -5, 1). A single baseline from the head mean (11) would give per-head
    (-11, -9, -7) / (19, -1, 9) -> consensus (0, -1, 0)."""
    q = torch.tensor([[0.0, 30.0], [2.0, 10.0], [4.0, 20.0]]).unsqueeze(-1)
    assert consensus_advantage(q).squeeze(-1).tolist() == [0.0, 0.0, 0.0]
    assert vanilla_advantage(q).squeeze(-1).tolist() == [4.0, -5.0, 1.0]
    # heads agreeing in sign but not in size: the smallest magnitude survives, per sample
    q = torch.tensor([[0.0, 30.0], [2.0, 10.0], [7.0, 50.0]]).unsqueeze(-1)  # baselines 3, 30: A (-3, -1, 4) / (0, -20, 20)
    assert consensus_advantage(q).squeeze(-1).tolist() == [0.0, -1.0, 4.0]


def test_penultimate_variant_uses_second_extremes():
    a = torch.tensor([-0.2, 0.5, 1.0, 2.0])  # one dissenting head
    q = (torch.stack([a, -a]) + torch.tensor([5.0, -1.0, 0.0, 3.0])).unsqueeze(-1)  # per-head baselines 5, -1, 0, 3
    assert consensus_advantage(q)[0, 0].item() == 0.0
    assert consensus_advantage(q, penultimate=True)[0, 0].item() == pytest.approx(0.5)


def test_penultimate_consensus_sorts_heads_per_sample():
    """M = 5 heads in shuffled order (per-head baselines differ): 2nd smallest / 2nd largest per sample, through
    advantages(q, "penultimate") too. Sample 0: A = (1, -0.2, 2, 0.5, 3) -> sorted (-0.2, 0.5, 1, 2, 3): the 2nd
    smallest 0.5 > 0 -> 0.5; sample 1 mirrors it: (-3, -2, -1, -0.5, 0.2): the 2nd largest -0.5 < 0 -> -0.5."""
    a = torch.tensor([1.0, -0.2, 2.0, 0.5, 3.0])
    q = (torch.stack([a, -a]) + torch.tensor([5.0, -1.0, 0.0, 3.0, 8.0])).unsqueeze(-1)
    torch.testing.assert_close(consensus_advantage(q, penultimate=True), torch.tensor([[0.5], [-0.5]]))
    torch.testing.assert_close(advantages(q, "penultimate"), torch.tensor([[0.5], [-0.5]]))
    torch.testing.assert_close(advantages(q, "conservative"), torch.tensor([[0.0], [0.0]]))  # one dissenting head


def test_group_std_normalisation_adds_eps_to_the_std():
    """A spread comparable to eps: A = +-1e-6, group std sqrt(2) 1e-6 -> A / (std + eps) = +-1 / (sqrt(2) + 1)."""
    q = torch.tensor([[[0.0]], [[2e-6]]], dtype=torch.float64)
    expected = torch.tensor([[-1.0], [1.0]], dtype=torch.float64) / (2**0.5 + 1)
    torch.testing.assert_close(advantages(q, "vanilla", normalize_group=True, eps=1e-6), expected)


def test_group_std_normalisation_flag():
    q = torch.tensor([[[0.0]], [[2.0]], [[4.0]]])  # [G=3, M=1, B=1]
    raw = advantages(q, "vanilla")
    norm = advantages(q, "vanilla", normalize_group=True)
    assert torch.allclose(raw.squeeze(), torch.tensor([-2.0, 0.0, 2.0]))
    assert torch.allclose(norm.squeeze(), torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5)


def test_ppo_loss_at_ratio_one_is_minus_mean_advantage_and_gradient_is_advantage():
    logp = torch.zeros(4, requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5, 0.0])
    loss = ppo_clip_loss(logp, torch.zeros(4), adv, clip_eps=0.01)
    stats = ratio_stats(logp - torch.zeros(4), 0.01)
    assert loss.item() == pytest.approx(-adv.mean().item())
    loss.backward()
    assert torch.allclose(logp.grad, -adv / 4)
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_frac"] == 0.0


@pytest.mark.parametrize("precision", PRECISIONS)
def test_ogpo_ratio_is_one_at_theta_old_in_every_precision(precision, bf16_anywhere):
    """The first update starts with actor = EMA actor: the old log-probs (imagined, --run.precision) and the new
    teacher-forced ones must agree, so every chain's ratio is 1 and nothing is clipped (compiled: test_fastpath)."""
    buf = random_buffer()
    cfg = dataclasses.replace(ogpo_config("ogpo-plus-ca", "toy", "tiny"), critic_warmup=0)
    algo = OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)
    algo.enable_fast_path(False, precision)
    assert algo.fast.precision == precision
    stats = algo.update(buf)
    assert stats["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-6) and stats["actor/ratio_max"] < 1 + 1e-5
    assert stats["actor/clip_frac"] == 0.0 and abs(stats["actor/approx_kl"]) < 1e-9


@pytest.mark.parametrize("log_ratio, adv, clipped", [
    (0.1, 1.0, True),     # r = e^0.1 > 1 + eps, A > 0: clipped at 1 + eps, no gradient
    (0.1, -1.0, False),   # r > 1 + eps, A < 0: the unclipped r A is the min, gradient flows (pessimistic side)
    (-0.1, -1.0, True),   # r < 1 - eps, A < 0: clipped at 1 - eps, no gradient (the lower bound)
    (-0.1, 1.0, False),   # r < 1 - eps, A > 0: unclipped, gradient flows
    (0.005, 1.0, False),  # inside the trust region: both branches equal, gradient r A
    (-0.005, -1.0, False),
])
def test_ppo_clipping_on_both_sides_for_both_signs_of_the_advantage(log_ratio, adv, clipped):
    """L = -min(r A, clip(r, 1-eps, 1+eps) A), eps = 0.01: the loss value and dL/dlogp = -r A (unclipped) or 0."""
    eps, r = 0.01, float(np.exp(log_ratio))
    logp = torch.tensor([log_ratio], requires_grad=True)
    loss = ppo_clip_loss(logp, torch.zeros(1), torch.tensor([adv]), clip_eps=eps)
    loss.backward()
    expected = -min(r * adv, min(max(r, 1 - eps), 1 + eps) * adv)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logp.grad.item() == (0.0 if clipped else pytest.approx(-r * adv, rel=1e-5))
    assert ratio_stats(logp.detach(), eps)["clip_frac"] == float(abs(r - 1) > eps)


def test_ppo_loss_is_a_mean_over_chains_and_uses_the_old_logp_as_a_constant():
    logp = torch.tensor([0.2, -0.3, 0.0], requires_grad=True)
    old = torch.tensor([0.0, 0.0, 0.1], requires_grad=True)
    adv = torch.tensor([2.0, -1.0, 3.0])
    loss = ppo_clip_loss(logp, old, adv, clip_eps=0.5)  # every ratio inside [0.5, 1.5]: loss = -mean(r A)
    r = torch.exp(logp.detach() - old.detach())
    assert loss.item() == pytest.approx(-(r * adv).mean().item(), rel=1e-6)
    loss.backward()
    assert old.grad is None  # theta_old is not trained through the ratio
    torch.testing.assert_close(logp.grad, -(r * adv) / 3)


@pytest.mark.parametrize("G,B,mbc,device,expected", [
    (32, 256, None, "cpu", [4] * 8),     # paper size on CPU: 1024-chain slices of 4 group members
    (32, 256, None, "cuda", [32]),       # on a GPU one slice (docs/benchmarks.md)
    (32, 256, 0, "cpu", [32]),           # 0 = one slice anywhere
    (32, 256, 1024, "cuda", [4] * 8),    # an explicit value holds on every device
    (8, 64, None, "cpu", [8]),           # tiny: 512 chains fit one slice
    (5, 300, 1024, "cpu", [3, 2]),       # uneven: the last slice is shorter
    (4, 2000, 1024, "cpu", [1] * 4),     # B alone above the budget: one member per slice
    (4, 8, 1, "cpu", [1] * 4),           # a budget of 1 chain: one member per slice (not "one slice")
    (8, 1, 4, "cpu", [4, 4]),            # B = 1: 4 members per slice
])
def test_group_slices_truth_table(G, B, mbc, device, expected):
    slices = group_slices(G, B, mbc, device)
    assert [s.stop - s.start for s in slices] == expected
    assert slices[0].start == 0 and slices[-1].stop == G and all(a.stop == b.start for a, b in zip(slices, slices[1:]))


def test_micro_batched_ogpo_update_equals_the_one_slice_update():
    """The PPO loss is a mean over independent chains: accumulating it over slices gives the same step."""
    buf = random_buffer()
    base = dataclasses.replace(ogpo_config("ogpo-plus", "toy", "tiny"), critic_warmup=0)
    params = {}
    for mbc in (0, 128):  # G=8, B=64: one slice of 512 chains vs four of 128
        torch.manual_seed(0)  # network init draws from the global generator (the Trainer seeds it per run)
        algo = OGPO(dataclasses.replace(base, microbatch_chains=mbc), 6, 2, 4, torch.device("cpu"), seed=0)
        before = [p.detach().clone() for p in algo.actor.parameters()]
        buf.rng = np.random.default_rng(1)
        algo.update(buf)
        params[mbc] = [p.detach().clone() for p in algo.actor.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(before, params[mbc]))  # the actor did take a step
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(params[0], params[128]))


def test_actor_lr_restarts_each_cycle_or_holds_the_floor_after_the_first():
    """lr_restart (the reference): warm-up and cosine again every lr_cycle actor steps; lr_restart=False: the first
    cycle, then actor_lr_floor for good."""
    buf = random_buffer()
    lrs = {}
    for restart in (True, False):
        cfg = dataclasses.replace(ogpo_config("ogpo-plus", "toy", "tiny"), critic_warmup=0, lr_warmup=2, lr_cycle=4,
                                  actor_lr=1e-3, actor_lr_floor=1e-4, lr_restart=restart, grad_diag_every=0)
        algo = OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)
        lrs[restart] = [algo.update(buf)["actor/lr"] for _ in range(10)]
    first = [1e-4, 5.5e-4, 1e-3, 5.5e-4]  # warm-up floor -> peak over 2 steps, then cosine over the other 2
    assert lrs[True] == pytest.approx(first * 2 + first[:2])
    assert lrs[False] == pytest.approx(first + [1e-4] * 6)


def test_actor_lr_warmup_starts_at_the_actors_first_update_not_at_grad_step_zero():
    """The critic-only warm-up must not use up the actor's lr warm-up: the first actor step runs at the floor lr
    (the schedule's start), the lr climbs over `lr_warmup` actor steps, and the clock survives a checkpoint."""
    buf = random_buffer()
    cfg = dataclasses.replace(ogpo_config("ogpo-plus", "toy", "tiny"), critic_warmup=3, lr_warmup=4, lr_cycle=100,
                              actor_lr=1e-3, actor_lr_floor=1e-4, grad_diag_every=0)
    algo = OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)
    lrs = [algo.update(buf).get("actor/lr") for _ in range(6)]
    assert lrs[:3] == [None, None, None]  # critic-only updates: no actor step, no lr
    assert lrs[3] == pytest.approx(1e-4)  # first actor step: the warm-up's start (was 1e-3, the peak)
    assert lrs[4] == pytest.approx(1e-4 + 0.9e-3 / 4) and lrs[5] == pytest.approx(1e-4 + 0.9e-3 / 2)
    state = algo.extra_state()
    assert state == {"grad_steps": 6, "actor_steps": 3}
    fresh = OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)
    fresh.load_extra_state(state)
    assert fresh.actor_steps == 3
    fresh.load_extra_state({"grad_steps": 6})  # a checkpoint from before the actor clock existed
    assert fresh.actor_steps == 3
