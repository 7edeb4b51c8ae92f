"""Known answers for the bounded tanh-Gaussian head and the SAC pieces (policies/gaussian.py, objectives/sac.py)."""

import math

import torch

from flowft.objectives.sac import Temperature, sac_actor_loss, soft_next_value
from flowft.policies.gaussian import GaussianConfig, TanhGaussian, tanh_gaussian_log_prob


def test_log_prob_matches_change_of_variables():
    # 1-D: density of u = b*tanh(z), z ~ N(m, s^2), is N(z; m, s) / (b * (1 - tanh(z)^2)) at z = atanh(u/b)
    m, s, b = 0.3, 0.7, 2.0
    for u in (-1.5, 0.0, 0.4, 1.9):
        z = math.atanh(u / b)
        expected = -0.5 * ((z - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi) \
            - math.log(b * (1 - math.tanh(z) ** 2))
        got = tanh_gaussian_log_prob(torch.tensor([z]), torch.tensor([m]), torch.tensor([math.log(s)]), b)
        assert abs(got.item() - expected) < 1e-5


def test_density_integrates_to_one():
    b, m, s = 0.5, -0.2, 0.4
    u = torch.linspace(-b + 1e-6, b - 1e-6, 200_001, dtype=torch.float64)
    z = torch.atanh(u / b)
    dens = tanh_gaussian_log_prob(z[:, None], torch.full((1,), m, dtype=torch.float64),
                                  torch.full((1,), math.log(s), dtype=torch.float64), b).exp()
    assert abs(torch.trapezoid(dens, u).item() - 1.0) < 1e-3


def test_samples_respect_bound_and_zero_init_is_no_change(gen):
    head = TanhGaussian(5, 3, GaussianConfig(hidden=(16,), zero_mean_init=True, init_log_std=-1.0), bound=0.1)
    x = torch.randn(1000, 5, generator=gen) * 10
    u, logp = head.sample(x, gen)
    assert u.shape == (1000, 3) and logp.shape == (1000,)
    assert u.abs().max() < 0.1
    assert torch.equal(head.mode(x), torch.zeros(1000, 3))
    _, log_std = head(x)
    assert torch.allclose(log_std, torch.full_like(log_std, -1.0))


def test_temperature_moves_towards_target_entropy():
    t = Temperature(1.0)
    opt = torch.optim.SGD(t.parameters(), lr=0.1)
    logp = torch.full((8,), 2.0)  # entropy -2 below target 0 -> alpha must grow
    t.loss(logp, target_entropy=0.0).backward()
    opt.step()
    assert t.alpha.item() > 1.0


def test_actor_loss_and_soft_value():
    q, logp = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5])
    assert sac_actor_loss(q, logp, 0.2).item() == (0.2 * 0.5 - 1 + 0.2 * -0.5 - 3) / 2
    assert torch.allclose(soft_next_value(q, logp, 0.2), torch.tensor([0.9, 3.1]))
