"""BPTT extraction: maximise the critic's Q of the final action by backpropagating through the Euler ODE sampler
(algorithm_reference §4.6, §1.10 "BPTT collapses"; OGPO_public `agents/bptt.py::actor_loss_bptt`).

The start noise x0 is drawn once and held fixed (no gradient); the actor's velocity net is differentiated through
all K Euler steps (`FlowPolicy.sample_ode_differentiable`); the critic is frozen (the target ensemble, as the
reference) and only passes gradients to the action. Shapes: S samples per state, B states, M heads, d = H*Da.
"""

from __future__ import annotations

import torch

from flowft.critics.ensemble import Aggregation, CriticEnsemble, aggregate
from flowft.policies.flow import FlowPolicy


def bptt_actor_loss(policy: FlowPolicy, critic: CriticEnsemble, obs: torch.Tensor, x0: torch.Tensor,
                    agg: Aggregation = "mean", generator: torch.Generator | None = None):
    """obs [B, Do], x0 [S, B, d] -> (loss = -mean_{S,B} agg_M Q(s, ODE_theta(s, x0)), actions [S, B, H, Da],
    q [S, B]). Differentiable w.r.t. the policy's parameters; `generator` picks the heads for `subsample`."""
    S, B, d = x0.shape
    if obs.shape[0] != B or d != policy.flat_dim:
        raise ValueError(f"bptt: x0 must be [S, {obs.shape[0]}, {policy.flat_dim}], got {tuple(x0.shape)}")
    obs_rep = obs.unsqueeze(0).expand(S, B, obs.shape[-1])  # [S, B, Do]
    actions = policy.sample_ode_differentiable(obs_rep.reshape(S * B, -1), x0.reshape(S * B, d))
    actions = actions.view(S, B, policy.chunk_len, policy.act_dim)  # [S, B, H, Da]
    q = aggregate(critic(obs_rep, actions), agg, generator)  # [S, B]
    return -q.mean(), actions, q
