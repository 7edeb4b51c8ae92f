"""Known-answer tests of src/flowft/policies/sde.py that kill the mutants benchmarks/mutation.sh left alive.

Every sampler and log-prob is checked against `_Ref`, an independent float64 re-derivation written row by row from
the formulas of algorithm_reference §2.2 (Euler-Maruyama step x' = x + dt v + sigma^2/2 s, score
s = (t v - x) / (1 - t), per-step std sigma_k), with an analytic velocity, wide inputs (so that the [-1, 1] clips
bind) and every configuration branch. Shapes: R rows, K steps, d dims.
"""

import math

import pytest
import torch

from flowft.errors import ConfigError
from flowft.policies.sde import (
    LOG_2PI, SDEConfig, chain_log_prob, gaussian_logp, live_steps, ode_sample, sde_chain, sde_sample,
    sigma_schedule, step_log_probs, step_mean, step_noise, transition_log_prob,
)

W = torch.tensor([[-0.7, 0.4, 0.1], [0.3, -1.1, 0.5], [0.2, 0.6, -0.9]])  # d = 3


def vel(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """An analytic velocity that mixes the dims and depends on t: x W + (1 + 2t) b. x [N, d], t [N] -> [N, d]."""
    b = torch.tensor([0.8, -0.5, 1.2], dtype=x.dtype)
    return x @ W.to(x.dtype) + (1.0 + 2.0 * t.to(x.dtype)).unsqueeze(-1) * b


def _sig(cfg: SDEConfig, K: int, k: int) -> float:
    if cfg.schedule == "tapered":
        return cfg.sigma_b * math.sqrt(1.0 - k / K)
    return cfg.sigma_b if k < K - 1 else 0.0


def _mean(v, x, t: float, sig: float, K: int, cfg: SDEConfig):
    """One row's step mean from the general formula (the tapered schedule's cancellation is not used here)."""
    m = x + v / K
    if cfg.correction != "none":
        corr = 0.5 * sig**2 * (t * v - x) / (1.0 - t)
        m = m + (corr / K if cfg.correction == "reference" else corr)
    return m.clamp(-1.0, 1.0) if cfg.clip_intermediate else m


def _lognormal(x, m, s: float) -> float:
    return float((-0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum())


def _ref_chain(x0, eps, K, cfg, std=None):
    """float64 loop over rows and steps -> (action, chain, logp)."""
    R, d = x0.shape
    x0 = x0.double()
    chain, logp = torch.zeros(R, K + 1, d, dtype=torch.float64), torch.zeros(R, dtype=torch.float64)
    for r in range(R):
        x = x0[r]
        chain[r, 0] = x
        lp = _lognormal(x, torch.zeros(d, dtype=torch.float64), 1.0)
        for k in range(K):
            sig = _sig(cfg, K, k)
            s = sig if std is None else float(std[k])
            m = _mean(vel(x[None], torch.tensor([k / K], dtype=torch.float64))[0], x, k / K, sig, K, cfg)
            if s > 0:
                x = m + s * eps[k, r].double().clamp(-cfg.noise_clip, cfg.noise_clip)
                lp += _lognormal(x, m, s)
            else:
                x = m
            chain[r, k + 1] = x
        logp[r] = lp / ((K + 1) * d) if cfg.normalize_logprob else lp
    return chain[:, -1].clamp(-1.0, 1.0), chain, logp


def _ref_chain_logp(chain, K, cfg):
    """Teacher-forced log-prob of given chains [R, K+1, d], float64, skipping steps of std 0."""
    R, _, d = chain.shape
    chain = chain.double()
    out = torch.zeros(R, dtype=torch.float64)
    for r in range(R):
        lp = _lognormal(chain[r, 0], torch.zeros(d, dtype=torch.float64), 1.0)
        for k in range(K):
            sig = _sig(cfg, K, k)
            if sig > 0:
                x = chain[r, k]
                m = _mean(vel(x[None], torch.tensor([k / K], dtype=torch.float64))[0], x, k / K, sig, K, cfg)
                lp += _lognormal(chain[r, k + 1], m, sig)
        out[r] = lp / ((K + 1) * d) if cfg.normalize_logprob else lp
    return out


CONFIGS = [
    SDEConfig(sigma_b=0.3),  # the defaults: tapered, consistent, clipped, normalised
    SDEConfig(sigma_b=0.3, schedule="constant", correction="reference", clip_intermediate=False,
              normalize_logprob=False),
    SDEConfig(sigma_b=0.25, schedule="constant", correction="consistent", noise_clip=0.7),
    SDEConfig(sigma_b=0.4, schedule="tapered", correction="reference", clip_intermediate=True, noise_clip=0.5,
              normalize_logprob=False),
    SDEConfig(sigma_b=0.2, correction="none", clip_intermediate=False),
]


def _inputs(R=6, K=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    return 1.6 * torch.randn(R, 3, generator=g), 1.5 * torch.randn(K, R, 3, generator=g)


def test_defaults_are_the_authors_scripts_and_validation_names_the_flag():
    c = SDEConfig()
    assert (c.sigma_b, c.schedule, c.correction, c.clip_intermediate, c.noise_clip, c.normalize_logprob) == (
        0.05, "tapered", "consistent", True, 3.0, True)
    assert SDEConfig(sigma_b=0.0).sigma_b == 0.0  # a deterministic chain is allowed
    with pytest.raises(ConfigError, match=r"policy\.sde\.sigma[_-]b"):
        SDEConfig(sigma_b=-0.1)
    with pytest.raises(ConfigError, match=r"policy\.sde\.noise[_-]clip"):
        SDEConfig(noise_clip=0.0)
    assert LOG_2PI == pytest.approx(1.8378770664093453, abs=1e-15)


def test_sigma_schedule_values():
    tap = sigma_schedule(SDEConfig(sigma_b=0.2), 4)
    assert tap.dtype == torch.float32 and tap.shape == (4,)
    assert torch.allclose(tap, torch.tensor([0.2, 0.2 * math.sqrt(0.75), 0.2 * math.sqrt(0.5), 0.1]), atol=1e-7)
    con = sigma_schedule(SDEConfig(sigma_b=0.2, schedule="constant"), 3)
    assert con.dtype == torch.float32 and torch.equal(con, torch.tensor([0.2, 0.2, 0.0]))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_step_mean_matches_the_formula(cfg):
    K = 5
    g = torch.Generator().manual_seed(1)
    x, v = 1.5 * torch.randn(8, 3, generator=g), 2.0 * torch.randn(8, 3, generator=g)
    t = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 0.2, 0.4, 0.6]).view(8, 1)
    sig = torch.tensor([_sig(cfg, K, round(float(tt) * K)) for tt in t.view(-1)]).view(8, 1)
    got = step_mean(v, x, t, sig, K, cfg)
    want = torch.stack([_mean(v[i].double(), x[i].double(), float(t[i]), float(sig[i]), K, cfg) for i in range(8)])
    assert torch.allclose(got.double(), want, atol=1e-6)
    if cfg.clip_intermediate:
        assert (want.abs() == 1.0).any() and (want.abs() < 1.0).any()  # the clip binds on some entries only


def test_step_mean_clips_to_exactly_unit_box():
    cfg = SDEConfig(correction="none")
    x = torch.tensor([[1.4, -1.4, 0.5, -1.8, 1.8]])
    got = step_mean(torch.zeros_like(x), x, torch.zeros(1, 1), torch.zeros(1, 1), 4, cfg)
    assert torch.equal(got, torch.tensor([[1.0, -1.0, 0.5, -1.0, 1.0]]))


def test_gaussian_logp_is_the_diagonal_normal_density():
    g = torch.Generator().manual_seed(2)
    x, m = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    sigma = torch.tensor([0.3, 0.5, 1.0, 2.0, 0.1]).view(5, 1)
    want = torch.distributions.Normal(m.double(), sigma.double()).log_prob(x.double()).sum(-1)
    assert torch.allclose(gaussian_logp(x, m, sigma).double(), want, atol=1e-5)


@pytest.mark.parametrize("clip", [True, False])
def test_ode_sample_is_euler_on_the_velocity(clip):
    x0 = 1.2 * torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    x = x0.double()
    for k in range(4):
        x = x + vel(x, torch.full((5,), k / 4, dtype=torch.float64)) / 4
    want = x.clamp(-1.0, 1.0) if clip else x
    assert (x.abs() > 1.0).any()  # the final clip binds
    got = ode_sample(vel, x0.double(), 4, clip=clip)
    assert got.dtype == torch.float32  # the integration runs in float32 whatever the noise's dtype
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_ode_sample_clips_by_default():
    assert ode_sample(lambda x, t: torch.full_like(x, 3.0), torch.zeros(2, 2), 1).max() == 1.0


def test_live_steps_truth_table():
    assert live_steps(SDEConfig(sigma_b=0.1), 3) == [True, True, True]
    assert live_steps(SDEConfig(sigma_b=0.1, schedule="constant"), 3) == [True, True, False]
    assert live_steps(SDEConfig(sigma_b=0.0), 3) == [False, False, False]
    assert live_steps(SDEConfig(sigma_b=0.0, schedule="constant"), 2) == [False, False]
    assert live_steps(SDEConfig(sigma_b=0.1), 4, torch.tensor([0.2, 0.0, 0.1, 0.0])) == [True, False, True, False]
    assert all(type(b) is bool for b in live_steps(SDEConfig(), 2, torch.tensor([0.1, 0.0])))


def test_step_noise_is_one_draw_per_live_step_in_order():
    live = [True, False, True, True]
    eps = step_noise(3, 2, live, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    want = torch.zeros(4, 3, 2)
    for k in (0, 2, 3):
        want[k] = torch.randn(3, 2, generator=g)
    assert eps.shape == (4, 3, 2) and torch.equal(eps, want)
    torch.manual_seed(9)  # without a generator: the global stream
    a = step_noise(3, 2, [True])
    torch.manual_seed(9)
    assert torch.equal(a[0], torch.randn(3, 2))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sde_chain_matches_the_reference(cfg):
    K = 4
    x0, eps = _inputs(K=K)
    action, chain, logp = sde_chain(vel, x0, eps, K, cfg)
    ra, rc, rl = _ref_chain(x0, eps, K, cfg)
    assert chain.shape == (6, K + 1, 3) and chain.dtype == logp.dtype == torch.float32
    assert torch.allclose(chain.double(), rc, atol=1e-5)
    assert torch.allclose(action.double(), ra, atol=1e-5)
    assert torch.allclose(logp.double(), rl, atol=1e-4, rtol=1e-5)
    if live_steps(cfg, K)[-1] or not cfg.clip_intermediate:  # else x_K is a clipped mean
        assert (rc[:, -1].abs() > 1.0).any()  # the chain keeps the unclipped x_K; the action is clipped


def test_sde_chain_std_override_and_dead_steps():
    """DPPO's exploration std replaces the injected std (0 = a deterministic step); the drift keeps the schedule."""
    cfg = SDEConfig(sigma_b=0.3, schedule="constant", correction="consistent", clip_intermediate=False,
                    normalize_logprob=False)
    K, std = 4, torch.tensor([0.5, 0.0, 0.2, 0.1])
    x0, eps = _inputs(K=K, seed=7)
    action, chain, logp = sde_chain(vel, x0, eps, K, cfg, std)
    ra, rc, rl = _ref_chain(x0, eps, K, cfg, std)
    assert torch.allclose(chain.double(), rc, atol=1e-5) and torch.allclose(action.double(), ra, atol=1e-5)
    assert torch.allclose(logp.double(), rl, atol=1e-4, rtol=1e-5)


def test_sde_chain_casts_double_noise_to_float32():
    cfg = SDEConfig(sigma_b=0.3)
    x0, eps = _inputs(K=3)
    action, chain, logp = sde_chain(vel, x0.double(), eps, 3, cfg)
    assert action.dtype == chain.dtype == logp.dtype == torch.float32
    assert torch.allclose(logp, sde_chain(vel, x0, eps, 3, cfg)[2])


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[2]])
def test_sde_sample_draws_its_noise_per_live_step_from_the_generator(cfg):
    K, (x0, _) = 4, _inputs(K=4)
    got = sde_sample(vel, x0, K, cfg, torch.Generator().manual_seed(11))
    eps = step_noise(6, 3, live_steps(cfg, K), generator=torch.Generator().manual_seed(11))
    for a, b in zip(got, _ref_chain(x0, eps, K, cfg)):
        assert torch.allclose(a.double(), b, atol=1e-4, rtol=1e-5)


def test_sde_sample_std_override():
    cfg, K, std = SDEConfig(sigma_b=0.2, normalize_logprob=False), 3, torch.tensor([0.0, 0.4, 0.3])
    x0, _ = _inputs(K=K)
    _, chain, logp = sde_sample(vel, x0, K, cfg, torch.Generator().manual_seed(12), std=std)
    eps = step_noise(6, 3, [False, True, True], generator=torch.Generator().manual_seed(12))
    _, rc, rl = _ref_chain(x0, eps, K, cfg, std)
    assert torch.allclose(chain.double(), rc, atol=1e-5) and torch.allclose(logp.double(), rl, atol=1e-4)


@pytest.mark.parametrize("cfg", CONFIGS + [SDEConfig(sigma_b=0.0, normalize_logprob=False)])
def test_chain_log_prob_of_arbitrary_chains_matches_the_reference(cfg):
    """Chains that no sampler produced (each step far from its mean): the teacher-forced density itself."""
    K = 4
    chain = 1.3 * torch.randn(5, K + 1, 3, generator=torch.Generator().manual_seed(13))
    got = chain_log_prob(vel, chain, K, cfg)
    assert got.shape == (5,) and torch.isfinite(got).all()
    assert torch.allclose(got.double(), _ref_chain_logp(chain, K, cfg), atol=1e-4, rtol=1e-5)


def test_transition_log_prob_per_dimension():
    cfg, K = SDEConfig(sigma_b=0.3, schedule="constant", correction="reference", clip_intermediate=False), 5
    g = torch.Generator().manual_seed(14)
    v, x, xn = (torch.randn(4, 3, generator=g) for _ in range(3))
    t, sig, std = torch.full((4, 1), 0.4), torch.full((4, 1), 0.3), torch.tensor([0.2, 0.5, 1.0, 3.0]).view(4, 1)
    got = transition_log_prob(v, x, xn, t, sig, std, K, cfg)
    m = torch.stack([_mean(v[i].double(), x[i].double(), 0.4, 0.3, K, cfg) for i in range(4)])
    want = torch.distributions.Normal(m, std.double()).log_prob(xn.double())
    assert got.shape == (4, 3) and torch.allclose(got.double(), want, atol=1e-5)


@pytest.mark.parametrize("std", [None, torch.tensor([0.4, 0.0, 0.25, 0.0])])
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1]])
def test_step_log_probs_per_step_and_dimension(cfg, std):
    K = 4
    chain = 1.3 * torch.randn(3, K + 1, 3, generator=torch.Generator().manual_seed(15))
    got = step_log_probs(vel, chain, K, cfg, std)
    assert got.shape == (3, K, 3) and torch.isfinite(got).all()
    want = torch.zeros(3, K, 3, dtype=torch.float64)
    for r in range(3):
        for k in range(K):
            sig = _sig(cfg, K, k)
            s = sig if std is None else float(std[k])
            if s > 0:
                x = chain[r, k].double()
                m = _mean(vel(x[None], torch.tensor([k / K], dtype=torch.float64))[0], x, k / K, sig, K, cfg)
                want[r, k] = torch.distributions.Normal(m, s).log_prob(chain[r, k + 1].double())
    assert torch.allclose(got.double(), want, atol=1e-4)
