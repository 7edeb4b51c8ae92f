"""SDE sampler: marginal preservation on an analytic flow, log-prob consistency, ratio = 1 at theta = theta_bar."""

import math

import pytest
import torch

from flowft.policies.flow import FlowPolicy, FlowPolicyConfig
from flowft.policies.sde import SDEConfig, chain_log_prob, ode_sample, sde_sample
from flowft.train.fastpath import PRECISIONS, UpdatePath

# Target: 2-component Gaussian mixture in 2-D, inside [-1, 1] so clipping never binds.
MEANS = torch.tensor([[-0.5, 0.3], [0.5, -0.2]])
STDS = torch.tensor([0.12, 0.08])
WEIGHTS = torch.tensor([0.3, 0.7])


def gmm_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact E[x1 - x0 | x_t = x] for x_t = t x1 + (1-t) x0, x0 ~ N(0, I), x1 ~ GMM (closed form per component)."""
    t = t.view(-1, 1, 1)  # [R, 1, 1]
    m, s2 = MEANS.view(1, 2, 2), (STDS**2).view(1, 2, 1)
    var = t**2 * s2 + (1 - t) ** 2  # [R, C, 1] marginal variance of x_t | component
    diff = x.unsqueeze(1) - t * m  # [R, C, 2]
    logw = torch.log(WEIGHTS).view(1, 2) - 0.5 * (diff**2 / var).sum(-1) - torch.log(var.squeeze(-1))  # d=2
    post = torch.softmax(logw, dim=1).unsqueeze(-1)  # [R, C, 1]
    e_x1 = m + t * s2 / var * diff
    e_x0 = (1 - t) / var * diff
    return (post * (e_x1 - e_x0)).sum(1)


def sample_target(n, gen):
    comp = torch.multinomial(WEIGHTS, n, replacement=True, generator=gen)
    return MEANS[comp] + STDS[comp].unsqueeze(-1) * torch.randn(n, 2, generator=gen)


def moments(x):
    left = x[:, 0] < 0
    return torch.stack([x.mean(0)[0], x.mean(0)[1], x[left].std(0).mean(), x[~left].std(0).mean(), left.float().mean()])


K, SIGMA = 50, 0.2  # per-step std 0.2 -> diffusion g^2 = K sigma^2 (1-t) = 2(1-t): strongly stochastic


def _sde(gen, correction, n=20_000, precision="fp32"):
    """The sampler as the fast path imagines (train/fastpath.py): under bf16 autocast except in fp32, with the exact
    velocity passed through a matmul so that bf16 rounds it as it rounds a network's output."""
    cfg = SDEConfig(sigma_b=SIGMA, clip_intermediate=False, noise_clip=10.0, correction=correction)
    eye = torch.eye(2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
        x = sde_sample(lambda x, t: gmm_velocity(x, t) @ eye, torch.randn(n, 2, generator=gen), K, cfg, gen)[0]
    return moments(x)


def test_analytic_velocity_transports_noise_to_target(gen):
    x = ode_sample(gmm_velocity, torch.randn(20_000, 2, generator=gen), K=200, clip=False)
    assert torch.allclose(moments(x), moments(sample_target(20_000, gen)), atol=0.02)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sde_matches_ode_marginal(gen, precision):
    target = moments(sample_target(20_000, gen))
    ode = moments(ode_sample(gmm_velocity, torch.randn(20_000, 2, generator=gen), K=K))
    sde = _sde(gen, "consistent", precision=precision)
    # same marginal as the ODE sampler and as the true target (means, component spreads, mixture weight)
    assert (ode - target).abs().max() < 0.015, (ode, target)
    assert (sde - target).abs().max() < 0.015, (sde, target)
    assert torch.allclose(sde[2:4], STDS, rtol=0.06)


@pytest.mark.parametrize("correction", ["none", "reference"])
def test_dropping_or_shrinking_the_drift_correction_breaks_the_marginal(gen, correction):
    """Without the score correction the injected noise piles up: component stds roughly double. The authors'
    code scales the correction by dt as well (algorithm_reference 1.11.1), which at this noise level is
    indistinguishable from no correction."""
    bad, ode = _sde(gen, correction), moments(ode_sample(gmm_velocity, torch.randn(20_000, 2, generator=gen), K=K))
    assert (bad[2:4] / ode[2:4]).min() > 1.6, bad
    assert (bad[4] - ode[4]).abs() > 0.05  # mixture weight drifts too


@pytest.mark.parametrize("schedule", ["tapered", "constant"])
@pytest.mark.parametrize("normalize", [True, False])
def test_sampler_logp_equals_teacher_forced(gen, schedule, normalize):
    cfg = SDEConfig(sigma_b=0.1, schedule=schedule, normalize_logprob=normalize)
    x0 = torch.randn(256, 2, generator=gen)
    _, chain, logp = sde_sample(gmm_velocity, x0, 10, cfg, gen)
    assert chain.shape == (256, 11, 2) and logp.dtype == torch.float32
    recomputed = chain_log_prob(gmm_velocity, chain, 10, cfg)
    assert torch.allclose(logp, recomputed, atol=1e-5, rtol=1e-5)


def test_logprob_normalisation_divides_by_steps_times_dims(gen):
    x0 = torch.randn(64, 2, generator=gen)
    _, chain, _ = sde_sample(gmm_velocity, x0, 10, SDEConfig(), gen)
    raw = chain_log_prob(gmm_velocity, chain, 10, SDEConfig(normalize_logprob=False))
    norm = chain_log_prob(gmm_velocity, chain, 10, SDEConfig(normalize_logprob=True))
    assert torch.allclose(norm, raw / (11 * 2), atol=1e-6)


def test_single_step_logp_is_gaussian_density(gen):
    """K=1, v = 0: x1 = clip(x0) + sigma * eps; logp = log N(x0;0,I) + log N(x1; x0, sigma^2)."""
    cfg = SDEConfig(sigma_b=0.3, normalize_logprob=False, clip_intermediate=False)
    x0 = torch.tensor([[0.2, -0.4]])
    chain = torch.tensor([[[0.2, -0.4], [0.5, -0.1]]])
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    lp = chain_log_prob(zero, chain, 1, cfg)
    # correction with v = 0 at t = 0: sigma_b^2/2 * (0 - x0)
    mean = x0 - 0.5 * 0.09 * x0
    expect = (-0.5 * (x0**2).sum() - math.log(2 * math.pi)
              - 0.5 * (((chain[0, 1] - mean) / 0.3) ** 2).sum() - 2 * math.log(0.3) - math.log(2 * math.pi))
    assert torch.allclose(lp, expect.view(1), atol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_flow_policy_ratio_is_one_at_theta_bar_and_gradient_flows(gen, precision):
    """Chain and old log-prob imagined as OGPO's update does (fp32: = pol.sample_sde); new log-prob teacher-forced."""
    torch.manual_seed(0)
    pol = FlowPolicy(5, 2, 3, FlowPolicyConfig(hidden=(32, 32), denoise_steps=4))
    obs = torch.randn(7, 5, generator=gen)
    path = UpdatePath(torch.device("cpu"), None, precision)
    s = path.sample_sde(pol, obs, 6, generator=gen)
    assert s.chain.shape == (6, 7, 5, 6) and s.actions.shape == (6, 7, 3, 2)
    assert s.actions.abs().max() <= 1.0 and s.chain.dtype == s.logp.dtype == torch.float32
    lp = path.log_prob(pol, obs, s.chain)
    ratio = torch.exp(lp - s.logp)
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5)
    lp.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in pol.parameters())


def test_ode_sample_is_deterministic_given_noise(gen):
    pol = FlowPolicy(4, 2, 2, FlowPolicyConfig(hidden=(16,), denoise_steps=3))
    obs, noise = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.equal(pol.sample_ode(obs, noise=noise), pol.sample_ode(obs, noise=noise))
