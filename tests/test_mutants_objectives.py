"""Known-answer tests of src/flowft/objectives/ (awr, fpo, gae, bptt, sac, gradq_variance) that kill the mutants
benchmarks/mutation.sh left alive (docs/testing.md, "Mutation testing"). Values are derived by hand in the comments.
"""

import math

import numpy as np
import pytest
import torch

from flowft.critics.ensemble import aggregate
from flowft.objectives.awr import awr_fm_loss, awr_weights
from flowft.objectives.bptt import bptt_actor_loss
from flowft.objectives.fpo import cfm_mc_losses, fpo_clip_loss, fpo_log_ratio, spo_penalty
from flowft.objectives.gae import RunningReturnScaler, gae
from flowft.objectives.gradq_variance import q_gradient_at_mean
from flowft.objectives.sac import Temperature, sac_actor_loss
from flowft.policies.flow import FlowPolicy, FlowPolicyConfig

E = math.exp


# ------------------------------------------------------------------------------------------------------ AWR
def test_awr_weights_default_mode_is_symmetric():
    adv = torch.tensor([-1.0, 0.5])
    torch.testing.assert_close(awr_weights(adv, 2.0), torch.tensor([E(-0.5), E(0.25)]))


def test_awr_weights_small_positive_advantages_take_the_positive_branch():
    """0 < A < 1: exp(A / beta) in every mode (a threshold or clamp at 1 instead of 0 would give 1 or exp(1/beta))."""
    adv = torch.tensor([-0.5, 0.25, 0.75])
    want = [E(0.25 / 0.5), E(0.75 / 0.5)]
    torch.testing.assert_close(awr_weights(adv, 0.5, "asymmetric"), torch.tensor([1.0] + want))
    torch.testing.assert_close(awr_weights(adv, 0.5, "asymmetric", beta_neg=2.0), torch.tensor([E(-0.25)] + want))
    torch.testing.assert_close(awr_weights(adv, 0.5, "positive_only"), torch.tensor([0.0] + want))


@pytest.mark.parametrize("kw,field", [({"weight_max": 0.0}, "awr_weight_max"), ({"beta_neg": 0.0}, "awr_beta_neg")])
def test_awr_weights_zero_bounds_are_refused_with_the_field_name(kw, field):
    with pytest.raises(ValueError, match=rf"{field} must be > 0.*got 0\.0"):
        awr_weights(torch.zeros(2), 1.0, "asymmetric", **kw)


def test_awr_weights_bounds_below_one_are_allowed():
    w = awr_weights(torch.tensor([-1.0, 1.0]), 1.0, "asymmetric", weight_max=0.5, beta_neg=0.5)
    torch.testing.assert_close(w, torch.tensor([E(-2.0), 0.5]))  # exp(-1/0.5); exp(1) clipped at 0.5


def test_awr_fm_loss_normalises_each_group_index_by_its_own_batch_mean():
    """Rows of different means: a global mean would give other weights. w [G=2, B=2]; losses [n=1, 2, 2]."""
    w = torch.tensor([[1.0, 3.0], [10.0, 30.0]])  # each row normalised to [0.5, 1.5]
    losses = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    want = (0.5 * 1 + 1.5 * 2 + 0.5 * 3 + 1.5 * 4) / 4
    assert awr_fm_loss(losses, w).item() == pytest.approx(want, rel=1e-6)


def test_awr_fm_loss_adds_eps_to_the_mean():
    """eps guards an all-zero batch: mean 0 + eps -> 0 weights, a finite loss; eps = 1 shows it is added."""
    losses = torch.ones(1, 1, 2)
    assert awr_fm_loss(losses, torch.zeros(1, 2)).item() == 0.0
    # w = [1, 3], mean 2, + eps 1 -> [1/3, 1]; mean(w * 1) = 2/3
    assert awr_fm_loss(losses, torch.tensor([[1.0, 3.0]]), eps=1.0).item() == pytest.approx(2.0 / 3.0)


# ------------------------------------------------------------------------------------------------------ FPO
def _affine_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v(x, t) = 2 x + t: reads both the noised point and its time. x [N, d], t [N] -> [N, d]."""
    return 2.0 * x + t.unsqueeze(-1)


def test_cfm_mc_losses_evaluate_the_velocity_at_the_interpolant():
    """x1 = [0.5, -1], eps = [2, 1], tau = 0.25: x_tau = 0.25 x1 + 0.75 eps = [1.625, 0.5];
    v = 2 x_tau + 0.25 = [3.5, 1.25]; target x1 - eps = [-1.5, -2]; diff [5, 3.25] -> 25 + 10.5625."""
    x1, eps, tau = torch.tensor([[0.5, -1.0]]), torch.tensor([[[2.0, 1.0]]]), torch.tensor([[0.25]])
    torch.testing.assert_close(cfm_mc_losses(_affine_velocity, x1, tau, eps), torch.tensor([[35.5625]]))


def test_cfm_mc_losses_huber_branches_with_delta_not_one():
    """delta = 0.5, zero velocity, diff = eps - x1 = [0.25, -2]: 0.25^2 (quadratic) + 2*0.5*2 - 0.5^2 (linear)."""
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x1, eps, tau = torch.zeros(1, 2), torch.tensor([[[0.25, -2.0]]]), torch.tensor([[0.5]])
    torch.testing.assert_close(cfm_mc_losses(zero, x1, tau, eps, huber_delta=0.5), torch.tensor([[0.0625 + 1.75]]))


def test_fpo_log_ratio_defaults_per_sample_and_the_reference_clamps():
    """Defaults: per-sample ratios, losses clamped to [0, 4], differences to +-5."""
    old = torch.tensor([[4.5, 0.0], [-1.0, 3.0]])  # [n=2, R=2]
    new = torch.tensor([[-2.0, 4.5], [0.0, 0.0]])
    # clamped old [[4, 0], [0, 3]], new [[0, 4], [0, 0]] -> per-sample [[4, -4], [0, 3]] (within +-5)
    assert fpo_log_ratio(old, new).tolist() == [[4.0, -4.0], [0.0, 3.0]]
    big_old, big_new = torch.tensor([[5.5, 0.0]]), torch.tensor([[0.0, 5.5]])
    assert fpo_log_ratio(big_old, big_new, loss_clamp=100.0).tolist() == [[5.0, -5.0]]  # default diff clamp 5


def test_fpo_log_ratio_clamps_negative_differences_and_the_mc_mean_keeps_its_axis():
    old, new = torch.tensor([[0.0], [1.0]]), torch.tensor([[9.0], [7.0]])  # MC means 0.5 and 8
    assert fpo_log_ratio(old, new, per_sample=False, loss_clamp=100.0, diff_clamp=3.0).tolist() == [[-3.0]]
    assert fpo_log_ratio(old, new, per_sample=False, loss_clamp=100.0, diff_clamp=10.0).tolist() == [[-7.5]]


def test_spo_penalty_scales_with_the_advantage_magnitude():
    """ratio 1.5 outside [0.8, 1.2] by 0.3; |A| = 2: 0.09 * 2 / 0.8; ratio 0.5 below by 0.3: the same."""
    assert spo_penalty(torch.tensor(1.5), torch.tensor(-2.0), 0.2).item() == pytest.approx(0.09 * 2 / 0.8)
    assert spo_penalty(torch.tensor(0.5), torch.tensor(2.0), 0.2).item() == pytest.approx(0.09 * 2 / 0.8)


def test_fpo_clip_loss_hand_computed_with_advantages_not_one():
    """PPO clipping (aspo off by default) on both sides: A = 2, r = 1.5 -> min(3, 2.4) = 2.4;
    A = -2, r = 0.5 -> min(-1, -1.6) = -1.6 (the lower clip binds); loss = -mean = -0.4."""
    log_r = torch.log(torch.tensor([[1.5, 0.5]]))
    assert fpo_clip_loss(log_r, torch.tensor([2.0, -2.0]), 0.2).item() == pytest.approx(-0.4)


def test_fpo_clip_loss_aspo_hand_computed():
    """ASPO: A = 0.5 > 0 keeps PPO (min(0.75, 0.6) = 0.6); A = -2, r = 1.5: r A - 0.09 * 2 / 0.8 = -3.225."""
    log_r = torch.log(torch.tensor([[1.5, 1.5]]))
    got = fpo_clip_loss(log_r, torch.tensor([0.5, -2.0]), 0.2, aspo=True).item()
    assert got == pytest.approx(-(0.6 - 3.0 - 0.225) / 2)


# ------------------------------------------------------------------------------------------------------ GAE
def _gae_inputs():
    """rewards, values, next_values, terminated, cut [D=4] of tests/test_dppo.py's hand-computed episode."""
    t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return (t(1.0, 0.0, 2.0, -1.0), t(1.0, 2.0, 3.0, 4.0), t(2.0, 5.0, 7.0, 6.0),
            torch.tensor([False, False, True, False]), torch.tensor([False, True, True, True]))


@pytest.mark.parametrize("i,name", [(1, "values"), (2, "next_values"), (3, "terminated"), (4, "cut")])
def test_gae_shape_error_names_the_argument(i, name):
    args = list(_gae_inputs())
    args[i] = args[i][:3]
    with pytest.raises(ValueError, match=rf"^gae: {name} has shape \(3,\), rewards \(4,\)$"):
        gae(*args, gamma=0.9, lam=0.5)


def test_gae_advantage_past_the_last_decision_is_zero():
    """An uncut last decision (a caller's slip) still ends the recursion: A_3 = delta_3 = -1 + .9*6 - 4 = 0.4;
    A_2 = delta_2 + .45 * A_3 (cut_2 = 0 now) = -1 + 0.18."""
    r, v, nv, term, _ = _gae_inputs()
    adv, _ = gae(r, v, nv, term, torch.tensor([False, True, False, False]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv, torch.tensor([2.925, 2.5, -0.82, 0.4], dtype=torch.float64))


def test_gae_accumulates_in_the_inputs_dtype():
    """Half-precision inputs: the recursion runs in float16 (bit-equal to a float16 loop), not in float32."""
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(40, generator=g).half() for _ in range(3))
    term, cut = torch.zeros(40, dtype=torch.bool), torch.zeros(40, dtype=torch.bool)
    cut[-1] = True
    adv, _ = gae(r, v, nv, term, cut, gamma=0.99, lam=0.95)
    not_term, not_cut = 1.0 - term.half(), 1.0 - cut.half()  # the same float16 operations, in the same order
    delta, run, want = r + 0.99 * not_term * nv - v, torch.zeros((), dtype=torch.float16), torch.empty_like(r)
    for t in range(39, -1, -1):
        run = delta[t] + 0.99 * 0.95 * not_cut[t] * run
        want[t] = run
    assert adv.dtype == torch.float16 and torch.equal(adv, want)


def _pooled(rets: np.ndarray) -> tuple[float, float, float]:
    """Moments of the returns pooled with the scaler's prior (mean 0, var 1, weight 1e-4), computed in one go."""
    w0, n = 1e-4, len(rets)
    mean = rets.sum() / (w0 + n)
    var = (w0 * (1.0 + mean**2) + ((rets - mean) ** 2).sum()) / (w0 + n)
    return mean, var, w0 + n


def test_running_return_scaler_state_after_two_batches_matches_pooled_moments():
    """gamma = 0.5. Batch 1 (envs 0, 1): env 0 returns 1, 0.5 + 2 = 2.5 (episode ends), env 1 returns 4.
    Batch 2 (envs 0, 2 new): env 0 restarted: 3; env 2: -1, -0.5 - 2 = -2.5. The parallel merge equals the
    pooled moments of all five returns with the prior; rewards are divided by sqrt(var + 1e-8)."""
    s = RunningReturnScaler(gamma=0.5)
    assert s.state() == {"ret": [], "mean": 0.0, "var": 1.0, "count": 1e-4}
    out1 = s(np.array([1.0, 2.0, 4.0]), np.array([0, 0, 1]), np.array([False, True, False]))
    m, v, c = _pooled(np.array([1.0, 2.5, 4.0]))
    assert s.mean == pytest.approx(m, rel=1e-12) and s.var == pytest.approx(v, rel=1e-12) and s.count == c
    np.testing.assert_allclose(out1, np.array([1.0, 2.0, 4.0]) / math.sqrt(v + 1e-8), rtol=1e-12)
    out2 = s(np.array([3.0, -1.0, -2.0]), np.array([0, 2, 2]), np.array([False, False, False]))
    m, v, c = _pooled(np.array([1.0, 2.5, 4.0, 3.0, -1.0, -2.5]))
    assert s.mean == pytest.approx(m, rel=1e-12) and s.var == pytest.approx(v, rel=1e-12)
    assert s.count == pytest.approx(c, rel=1e-15)
    np.testing.assert_allclose(out2, np.array([3.0, -1.0, -2.0]) / math.sqrt(v + 1e-8), rtol=1e-12)
    assert s.state()["ret"] == [3.0, 4.0, -2.5]  # exactly one slot per env seen


def test_running_return_scaler_eps_is_added_and_an_empty_batch_changes_nothing():
    s = RunningReturnScaler(gamma=0.5, eps=0.5)
    before = s.state()
    assert len(s(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))) == 0
    assert s.state() == before
    out = s(np.array([2.0, 2.0]), np.array([0, 1]), np.array([False, False]))  # returns 2, 2: batch var 0
    _, v, _ = _pooled(np.array([2.0, 2.0]))
    np.testing.assert_allclose(out, np.array([2.0, 2.0]) / math.sqrt(v + 0.5), rtol=1e-12)


def test_running_return_scaler_state_round_trip():
    s = RunningReturnScaler(gamma=0.9)
    s(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 1]), np.array([False, False, True]))
    st = s.state()
    assert all(type(x) is float for x in st["ret"]) and st["ret"] == [1.0, 0.0]
    t = RunningReturnScaler(gamma=0.9)
    t.load_state(st)
    assert t.state() == st and t.ret.dtype == np.float64
    assert type(t.mean) is type(t.var) is type(t.count) is float
    batch = (np.array([0.5, -1.0]), np.array([0, 1]), np.array([False, False]))
    np.testing.assert_array_equal(t(*batch), s(*batch))
    assert t.state() == s.state()
    t.load_state({"ret": [1, 2], "mean": 0, "var": 1, "count": 1})  # integer-valued (hand-written) state
    t(np.array([0.5]), np.array([0]), np.array([False]))
    assert t.ret.tolist() == [1.4, 2.0]  # 0.9 * 1 + 0.5 in float64, not truncated into an integer array


# ----------------------------------------------------------------------------------------------------- BPTT
def _bptt_setup(S=2, B=4):
    torch.manual_seed(0)
    pol = FlowPolicy(3, 2, 2, FlowPolicyConfig(hidden=(16,), denoise_steps=3))
    g = torch.Generator().manual_seed(1)
    obs, x0 = torch.randn(B, 3, generator=g), torch.randn(S, B, pol.flat_dim, generator=g)

    def critic(o, a):  # 6 heads that disagree: [S, B, Do], [S, B, H, Da] -> [6, S, B]
        s = a.flatten(-2).sum(-1) + o.sum(-1)
        return torch.stack([s * c + c for c in (1.0, 2.0, -1.0, 0.5, 3.0, -2.0)])

    with torch.no_grad():
        acts = torch.stack([pol.sample_ode(obs, noise=x0[i]) for i in range(S)])  # [S, B, H, Da]
    return pol, critic, obs, x0, critic(obs.expand(S, -1, -1), acts)


def test_bptt_default_and_mean_aggregate_average_the_heads():
    pol, critic, obs, x0, heads = _bptt_setup()
    for kw in ({}, {"agg": "mean"}):
        loss, _, q = bptt_actor_loss(pol, critic, obs, x0, **kw)
        torch.testing.assert_close(q, heads.mean(0), rtol=1e-5, atol=1e-5)
        assert loss.item() == pytest.approx(-heads.mean().item(), rel=1e-5)


def test_bptt_subsample_draws_its_heads_from_the_generator():
    pol, critic, obs, x0, heads = _bptt_setup()
    torch.manual_seed(123)  # the global stream must not be used
    for seed in range(4):
        q = bptt_actor_loss(pol, critic, obs, x0, "subsample", torch.Generator().manual_seed(seed))[2]
        want = aggregate(heads, "subsample", torch.Generator().manual_seed(seed))
        torch.testing.assert_close(q, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 4), (2, 4, 3)])
def test_bptt_shape_error_names_both_shapes(shape):
    pol, critic, obs, _, _ = _bptt_setup()
    want = rf"^bptt: x0 must be \[S, 4, 4\], got \({shape[0]}, {shape[1]}, {shape[2]}\)$"
    with pytest.raises(ValueError, match=want):
        bptt_actor_loss(pol, critic, obs, torch.zeros(shape))


# ------------------------------------------------------------------------------------------------------ SAC
def test_temperature_default_and_validation():
    assert Temperature().alpha.item() == pytest.approx(1.0)
    assert Temperature(0.25).log_alpha.item() == pytest.approx(math.log(0.25))
    with pytest.raises(ValueError, match=r"^initial temperature must be > 0, got 0\.0$"):
        Temperature(0.0)


def test_temperature_loss_hand_computed():
    """loss = -log_alpha * mean(logp + target): alpha = e^0.5, logp = [1, 3], target -4 -> -0.5 * (2 - 4) = 1;
    d loss / d log_alpha = -mean(logp + target) = 2."""
    t = Temperature(math.exp(0.5))
    loss = t.loss(torch.tensor([1.0, 3.0]), target_entropy=-4.0)
    assert loss.item() == pytest.approx(1.0, rel=1e-6)
    loss.backward()
    assert t.log_alpha.grad.item() == pytest.approx(2.0, rel=1e-6)


def test_sac_actor_loss_with_a_logp_not_plus_minus_one():
    q, logp = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 4.0])
    assert sac_actor_loss(q, logp, 0.5).item() == pytest.approx((0.5 * 2 - 1 + 0.5 * 4 + 2) / 2)


# ------------------------------------------------------------------------------------------- gradq_variance
def test_q_gradient_at_mean_is_a_unit_vector_even_for_a_small_gradient():
    """Q = 0.01 <w, a> (|grad| = 0.05 < 1) -> w / |w| = [0.6, -0.8, 0, 0]; a flat Q gives 0, not NaN."""
    w = torch.tensor([3.0, -4.0, 0.0, 0.0])
    actions = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))  # [G, B, H, Da]
    g = q_gradient_at_mean(lambda a: 0.01 * (a.flatten(-2) @ w), actions)
    torch.testing.assert_close(g, torch.tensor([[0.6, -0.8, 0.0, 0.0]] * 2))
    assert torch.equal(q_gradient_at_mean(lambda a: 0.0 * a.sum((-2, -1)), actions), torch.zeros(2, 4))
