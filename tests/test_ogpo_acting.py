"""OGPO acting: Best-of-N picks the critic's argmax; plain SDE acting until `bon_after_updates`."""

from dataclasses import replace

import torch

from flowft.algos.ogpo import OGPO
from flowft.presets import ogpo_config


def make(**kw):
    cfg = replace(ogpo_config("ogpo-plus-ca", "toy", "tiny"), **kw)
    return OGPO(cfg, 6, 2, 4, torch.device("cpu"), seed=0)


def test_best_of_n_executes_the_critic_argmax():
    algo = make(best_of_n=6, bon_agg="mean")
    obs = torch.randn(3, 6)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    chosen = algo.act(obs, "bon", generator=g1)  # [3, H, Da]
    cands = algo.actor_target.sample_sde(obs, 6, generator=g2).actions  # same draws: [6, 3, H, Da]
    q = algo.critic_target(obs.unsqueeze(0).expand(6, 3, 6), cands).mean(0)  # [6, 3]
    best = q.argmax(0)
    assert torch.equal(chosen, cands[best, torch.arange(3)])


def test_plain_sde_acting_until_bon_after_updates():
    algo = make(best_of_n=8, bon_after_updates=2)
    calls = []
    real = algo.actor_target.sample_sde

    def spy(obs, num_samples=1, generator=None):
        calls.append(num_samples)
        return real(obs, num_samples, generator=generator)

    algo.actor_target.sample_sde = spy
    obs = torch.randn(2, 6)
    algo.act(obs, "explore")
    algo.grad_steps = 2
    algo.act(obs, "explore")
    algo.grad_steps = 0
    algo.act(obs, "bon")  # the Best-of-N evaluator always uses N
    assert calls == [1, 8, 8]


def test_evaluation_never_advances_training_rng():
    algo = make(best_of_n=4, bon_agg="subsample")
    before = {k: g.get_state().clone() for k, g in algo.generators().items()}
    for mode in ("ode", "sde", "bon"):
        algo.act(torch.randn(3, 6), mode, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(before[k], g.get_state()) for k, g in algo.generators().items())
