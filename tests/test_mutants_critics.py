"""Known-answer tests of critics/ that kill the behaviour-changing survivors of mutation testing (issue 22,
benchmarks/mutation.sh; docs/testing.md lists the equivalent ones): trained LayerNorm affine parameters and unequal
hidden widths in the ensemble, its initialisation range, the subsample aggregation's edge cases and generator, the
diagnostic's tail-weight boundary, dtypes and metric names. Milliseconds each.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from test_critic import manual_head

from flowft.critics.diagnostics import critic_quality, episode_chunk_returns, spearman
from flowft.critics.ensemble import CriticConfig, CriticEnsemble, EnsembleLinear, aggregate
from flowft.policies.normalizer import Normalizer


def test_unequal_hidden_widths_and_trained_layer_norm_affines_match_independent_mlps():
    torch.manual_seed(0)
    c = CriticEnsemble(5, 2, 3, CriticConfig(num_heads=3, hidden=(16, 8, 4)))
    assert [tuple(layer.weight.shape) for layer in c.layers] == [(3, 11, 16), (3, 16, 8), (3, 8, 4)]
    assert tuple(c.out.weight.shape) == (3, 4, 1)
    with torch.no_grad():  # as after training: gains and biases away from LayerNorm's (1, 0) start
        for g, b in zip(c.ln_gain, c.ln_bias):
            g.uniform_(0.5, 2.0)
            b.uniform_(-1.0, 1.0)
    obs, act = torch.randn(6, 5), torch.randn(6, 3, 2)
    q = c(obs, act)
    for m in range(3):
        torch.testing.assert_close(q[m], manual_head(c, m, obs, act), rtol=1e-5, atol=1e-5)


def test_ensemble_linear_init_is_uniform_in_plus_minus_one_over_sqrt_fan_in():
    torch.manual_seed(0)
    layer = EnsembleLinear(4, 64, 256)
    bound = 1.0 / math.sqrt(64)
    for p in (layer.weight, layer.bias):
        assert p.min() >= -bound and p.max() <= bound
        assert p.min() < -0.9 * bound and p.max() > 0.9 * bound  # the whole symmetric range is used


def test_copy_normalizers_copies_both_statistics():
    c = CriticEnsemble(3, 2, 2, CriticConfig(num_heads=2, hidden=(8,)))
    obs_n, act_n = Normalizer(3), Normalizer(2)
    obs_n.fit_zscore(torch.randn(50, 3) * 4 + 2)
    act_n.fit_minmax(torch.rand(50, 2) * 3)
    c.copy_normalizers(obs_n, act_n)
    for mine, theirs in ((c.obs_normalizer, obs_n), (c.act_normalizer, act_n)):
        for k, v in theirs.state_dict().items():
            torch.testing.assert_close(mine.state_dict()[k], v, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- aggregate
def test_subsample_with_two_heads_is_their_min():
    q = torch.tensor([[3.0, -1.0], [1.0, 2.0]])  # [M = 2, B = 2]
    assert aggregate(q, "subsample", torch.Generator().manual_seed(0)).tolist() == [1.0, -1.0]


def test_subsample_with_one_head_is_that_head():
    q = torch.tensor([[3.0, -1.0, 4.0]])
    assert aggregate(q, "subsample", torch.Generator().manual_seed(0)).tolist() == [3.0, -1.0, 4.0]


def test_subsample_of_a_single_element_still_draws_a_pair():
    """q [M = 4, B = 1]: one state, four heads; the pair is randperm(4)[:2] of the given generator."""
    q = torch.tensor([[5.0], [1.0], [7.0], [3.0]])
    g = torch.Generator().manual_seed(3)
    pair = torch.randperm(4, generator=torch.Generator().manual_seed(3))[:2]
    assert aggregate(q, "subsample", g).tolist() == [q[pair, 0].min().item()]
    assert q[pair, 0].min().item() != 5.0  # not simply head 0
    assert not torch.equal(g.get_state(), torch.Generator().manual_seed(3).get_state())  # it drew


def test_subsample_draws_from_the_given_generator_only():
    q = torch.arange(40.0).view(8, 5)
    torch.manual_seed(0)
    a = [aggregate(q, "subsample", torch.Generator().manual_seed(s)) for s in range(6)]
    torch.manual_seed(1)  # the global RNG must not matter
    b = [aggregate(q, "subsample", torch.Generator().manual_seed(s)) for s in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert len({tuple(x.tolist()) for x in a}) > 1  # and the generator's seed does


# ------------------------------------------------------------------------------------- diagnostics
def test_tail_weight_boundary_counts_as_complete():
    """Truncated, gamma 0.5, T = 4, H = 1: tails gamma^(T - t) = 1/16, 1/8, 1/4, 1/2; with tail_weight 1/4 the
    chunks at t = 0, 1, 2 (weight <= 1/4) are complete."""
    starts, G, complete = episode_chunk_returns(np.array([1.0, 1.0, 1.0, 1.0]), False, 1, 0.5, tail_weight=0.25)
    assert starts.tolist() == [0, 1, 2, 3] and complete.tolist() == [True, True, True, False]
    assert G.tolist() == [1.875, 1.75, 1.5, 1.0]
    _, _, complete = episode_chunk_returns(np.array([1.0, 1.0]), True, 1, 0.5)
    assert complete.dtype == np.bool_ and complete.tolist() == [True, True]  # usable as a mask


def test_spearman_of_a_constant_side_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0])))
        assert math.isnan(spearman(np.array([1.0]), np.array([2.0])))


def test_critic_quality_names_and_values():
    q = np.array([[1.0, 2.0, 3.0, 10.0], [3.0, 2.0, 5.0, 0.0]])  # head mean (2, 2, 4, 5), min (1, 2, 3, 0)
    G = np.array([1.0, 3.0, 2.0, 4.0])
    out = critic_quality(q, G, np.array([True, True, True, False]))
    assert out == pytest.approx({
        "n_chunks": 3.0, "censored_n_chunks": 1.0, "bias": 2 / 3, "bias_min": 0.0, "mae": 4 / 3,
        "spearman": 0.0, "q_mean": 8 / 3,  # ranks (1.5, 1.5, 3) vs (1, 3, 2): uncorrelated
        "mc_return_mean": 2.0, "censored_bias": 1.0, "censored_q_mean": 5.0, "censored_mc_return_mean": 4.0,
        "spearman_all": 3 / math.sqrt(22.5)})  # ranks (1.5, 1.5, 3, 4) vs (1, 3, 2, 4)


def test_critic_quality_computes_in_float64_and_reads_0_1_flags():
    """The critic's Q arrives as float32: the means are taken in float64 (in float32, 2^24 + 1 + 1 rounds to 2^24).
    `complete` may be 0/1 numbers."""
    q = np.array([[2.0**24, 1.0, 1.0, 0.0]], np.float32)
    out = critic_quality(q, np.zeros(4, np.float32), [1, 1, 1, 0])
    assert (out["n_chunks"], out["censored_n_chunks"]) == (3.0, 1.0)
    assert out["q_mean"] == (2.0**24 + 2.0) / 3 and out["bias"] == (2.0**24 + 2.0) / 3
    out = critic_quality(np.zeros((1, 3), np.float32), np.array([2.0**24, 1.0, 1.0], np.float32), [1, 1, 1])
    assert out["mc_return_mean"] == (2.0**24 + 2.0) / 3


def test_critic_config_errors_name_the_cli_flag():
    from flowft.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--critic\.num-heads must be an integer >= 1, got 0$"):
        CriticConfig(num_heads=0)


def test_subsample_without_a_generator_draws_from_the_global_rng():
    q = torch.arange(12.0).view(4, 3)
    torch.manual_seed(0)
    a = aggregate(q, "subsample")
    torch.manual_seed(0)
    assert torch.equal(aggregate(q, "subsample"), a) and a.shape == (3,)
    assert aggregate(q, "subsample_each").shape == (3,)
