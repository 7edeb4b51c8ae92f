"""Critic ensemble: one batched pass equals M independent MLPs; aggregation rules; Polyak update."""

import torch
import torch.nn.functional as F

from flowft.critics.ensemble import CriticConfig, CriticEnsemble, aggregate, polyak


def manual_head(c: CriticEnsemble, m: int, obs, act):
    x = torch.cat([c.obs_normalizer(obs), c.act_normalizer(act).flatten(-2)], -1)
    for i, layer in enumerate(c.layers):
        x = x @ layer.weight[m] + layer.bias[m, 0]
        x = F.layer_norm(x, x.shape[-1:]) * c.ln_gain[i][m, 0] + c.ln_bias[i][m, 0]
        x = c.act(x)
    return (x @ c.out.weight[m] + c.out.bias[m, 0]).squeeze(-1)


def test_batched_heads_equal_independent_mlps():
    torch.manual_seed(0)
    c = CriticEnsemble(5, 2, 3, CriticConfig(num_heads=4, hidden=(16, 16)))
    obs, act = torch.randn(7, 5), torch.randn(7, 3, 2)
    q = c(obs, act)
    assert q.shape == (4, 7)
    for m in range(4):
        assert torch.allclose(q[m], manual_head(c, m, obs, act), atol=1e-5)
    assert not torch.allclose(q[0], q[1])  # heads are independently initialised
    q3 = c(obs.unsqueeze(0).expand(2, 7, 5), act.unsqueeze(0).expand(2, 7, 3, 2))  # leading dims kept
    assert q3.shape == (4, 2, 7) and torch.allclose(q3[:, 0], q)


def test_aggregation_rules():
    q = torch.tensor([[1.0, 5.0], [3.0, 2.0], [-1.0, 4.0]])  # [M=3, B=2]
    assert torch.allclose(aggregate(q, "mean"), torch.tensor([1.0, 11.0 / 3]))
    assert aggregate(q, "min").tolist() == [-1.0, 2.0]
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(3, generator=torch.Generator().manual_seed(0))[:2]
    assert torch.equal(aggregate(q, "subsample", g), q[idx].min(0).values)


def test_subsample_each_draws_an_independent_pair_per_element_with_replacement():
    """The reference's Best-of-N score: min over 2 heads drawn per (state, candidate) with replacement."""
    M, n, N = 4, 6, 500
    q = torch.arange(M, dtype=torch.float32).view(M, 1, 1).expand(M, n, N).clone()  # head m scores m everywhere
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, M, (2, n, N), generator=torch.Generator().manual_seed(1))
    out = aggregate(q, "subsample_each", g)
    assert torch.equal(out, idx.min(0).values.float())  # min of the two drawn head indices, element by element
    # elements differ (per-element pairs, not one pair per call) and a repeated head is possible (with replacement)
    assert out.unique().numel() == M and (idx[0] == idx[1]).any()
    # P(min of two uniform draws = 0) = 1 - (3/4)^2 = 0.4375
    assert abs((out == 0).float().mean().item() - 0.4375) < 0.03


def test_polyak_moves_parameters_and_copies_buffers():
    a = CriticEnsemble(3, 1, 2, CriticConfig(num_heads=2, hidden=(8,)))
    b = CriticEnsemble(3, 1, 2, CriticConfig(num_heads=2, hidden=(8,)))
    b.obs_normalizer.shift.fill_(3.0)
    before = [p.clone() for p in a.parameters()]
    polyak(a, b, 0.25)
    for p0, pa, pb in zip(before, a.parameters(), b.parameters()):
        assert torch.allclose(pa, 0.75 * p0 + 0.25 * pb)
    assert torch.equal(a.obs_normalizer.shift, b.obs_normalizer.shift)


def test_obs_clip_bounds_the_normalised_observations_of_critic_and_policy():
    """obs_clip c: an observation whose z-score lies beyond +-c reads as the one at the bound, for the critic ensemble
    and for the flow policy (velocity, hence every sampler and log-prob); inside the bound nothing changes."""
    from flowft.policies.flow import FlowPolicy, FlowPolicyConfig

    torch.manual_seed(0)
    shift, scale = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([0.01, 2.0, 1.0])
    inside = shift + scale * torch.tensor([[1.5, -0.5, 1.9]])  # z within +-2
    far = shift + scale * torch.tensor([[40.0, -900.0, 1.0]])  # z far outside
    at_bound = shift + scale * torch.tensor([[2.0, -2.0, 1.0]])
    acts = torch.rand(1, 2, 2) * 2 - 1  # [B, H, Da]
    x, t = torch.randn(1, 4), torch.tensor([0.3])
    for clip in (None, 2.0):
        critic = CriticEnsemble(3, 2, 2, CriticConfig(num_heads=3, hidden=(16,), obs_clip=clip))
        policy = FlowPolicy(3, 2, 2, FlowPolicyConfig(hidden=(16,), obs_clip=clip))
        for net in (critic, policy):
            net.obs_normalizer.shift.copy_(shift)
            net.obs_normalizer.scale.copy_(scale)
        with torch.no_grad():
            q = [critic(o, acts) for o in (inside, far, at_bound)]  # [M, 1] each
            v = [policy.velocity(policy.normalize_obs(o), x, t) for o in (inside, far, at_bound)]
        assert torch.equal(policy.normalize_obs(inside), policy.obs_normalizer(inside))
        if clip is None:
            assert not torch.allclose(q[1], q[2]) and not torch.allclose(v[1], v[2])
        else:
            torch.testing.assert_close(q[1], q[2])
            torch.testing.assert_close(v[1], v[2])
            assert policy.normalize_obs(far).abs().max() == 2.0
        unclipped = CriticEnsemble(3, 2, 2, CriticConfig(num_heads=3, hidden=(16,)))
        unclipped.load_state_dict(critic.state_dict())
        torch.testing.assert_close(q[0], unclipped(inside, acts).detach())  # inside the bound: the same critic
