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
    # G=2, M=2, B=1: head means per sample = [1.5, 3.5]; baseline 2.5
    q = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    assert torch.allclose(vanilla_advantage(q), torch.tensor([[-1.0], [1.0]]))


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
    """Build q so that per-head advantages equal `per_head` for sample 0: sample 1 mirrors it (baseline 0)."""
    a = torch.tensor(per_head)  # [M]
    q = torch.stack([a, -a]).unsqueeze(-1)  # [G=2, M, B=1]; group mean per head = 0
    assert consensus_advantage(q)[0, 0].item() == pytest.approx(expected)
    assert consensus_advantage(q)[1, 0].item() == pytest.approx(-expected)


def test_penultimate_variant_uses_second_extremes():
    a = torch.tensor([-0.2, 0.5, 1.0, 2.0])  # one dissenting head
    q = torch.stack([a, -a]).unsqueeze(-1)
    assert consensus_advantage(q)[0, 0].item() == 0.0
    assert consensus_advantage(q, penultimate=True)[0, 0].item() == pytest.approx(0.5)


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
def test_ogpo_ratio_is_one_at_theta_old_in_every_precision(precision):
    """The first update starts with actor = EMA actor: the old log-probs (imagined, --run.precision) and the new
    teacher-forced ones must agree, so every chain's ratio is 1 and nothing is clipped (compiled: test_fastpath)."""
    buf = random_buffer()
    cfg = dataclasses.replace(ogpo_config("ogpo-plus-ca", "toy", "tiny"), critic_warmup=0)
    algo = OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)
    algo.enable_fast_path(False, precision)
    assert algo.fast.precision == precision  # this CPU has bf16 matmuls (else a warning and fp32)
    stats = algo.update(buf)
    assert stats["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-6) and stats["actor/ratio_max"] < 1 + 1e-5
    assert stats["actor/clip_frac"] == 0.0 and abs(stats["actor/approx_kl"]) < 1e-9


def test_ppo_clipping_kills_gradient_outside_trust_region_in_the_advantage_direction():
    # ratio = e^0.1 > 1.01 with A > 0 -> clipped, no gradient; with A < 0 the unclipped branch is the min
    logp = torch.tensor([0.1, 0.1], requires_grad=True)
    loss = ppo_clip_loss(logp, torch.zeros(2), torch.tensor([1.0, -1.0]), clip_eps=0.01)
    stats = ratio_stats(logp - torch.zeros(2), 0.01)
    loss.backward()
    assert logp.grad[0].item() == 0.0
    assert logp.grad[1].item() == pytest.approx(torch.exp(torch.tensor(0.1)).item() / 2, rel=1e-5)
    assert stats["clip_frac"] == 1.0


@pytest.mark.parametrize("G,B,mbc,device,expected", [
    (32, 256, None, "cpu", [4] * 8),     # paper size on CPU: 1024-chain slices of 4 group members
    (32, 256, None, "cuda", [32]),       # on a GPU one slice (docs/benchmarks.md)
    (32, 256, 0, "cpu", [32]),           # 0 = one slice anywhere
    (32, 256, 1024, "cuda", [4] * 8),    # an explicit value holds on every device
    (8, 64, None, "cpu", [8]),           # tiny: 512 chains fit one slice
    (5, 300, 1024, "cpu", [3, 2]),       # uneven: the last slice is shorter
    (4, 2000, 1024, "cpu", [1] * 4),     # B alone above the budget: one member per slice
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
