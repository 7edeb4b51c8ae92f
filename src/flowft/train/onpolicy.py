"""Rollout storage for on-policy algorithms (DPPO) in the shared loop's on-policy mode.

The collector executes chunks open-loop; whenever an env gets a new chunk, that is a *decision* of the two-level
MDP (DPPO: env chunk-steps x denoising steps). The storage keeps, per env, its decisions of the current rollout:
the decision's obs, the algorithm's extras (e.g. the denoising chain and its per-step log-probs), the summed reward
of the actions executed from it, whether its episode terminated / ended, and the observation after it (the final
observation on an episode end) for bootstrapping. The loop replans every env at a rollout boundary
(ChunkCollector.flush), so every decision lies inside one rollout. Shapes: N envs, D decisions, Do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flowft.train.collector import StepResult


@dataclass
class RolloutBatch:
    """A finished rollout, flat and env-major (each env's decisions consecutive, in time order)."""

    obs: torch.Tensor  # [D, Do] observation of each decision
    next_obs: torch.Tensor  # [D, Do] observation after it (final obs when the episode ended)
    rewards: torch.Tensor  # [D] summed rewards of the executed actions
    terminated: torch.Tensor  # [D] bool: the episode terminated after this decision (no bootstrap)
    ended: torch.Tensor  # [D] bool: the episode ended (terminated or truncated) after this decision
    cut: torch.Tensor  # [D] bool: ended, or the env's last decision of this rollout (GAE recursion stops)
    env: torch.Tensor  # [D] int64 env index
    extras: dict[str, torch.Tensor]  # [D, ...] each, from the algorithm's act_rollout


class RolloutStorage:
    def __init__(self, num_envs: int):
        self.N = num_envs
        self.clear()

    def clear(self) -> None:
        self.steps = 0  # env steps per env collected in this rollout
        self.decisions: list[list[dict]] = [[] for _ in range(self.N)]

    def __len__(self) -> int:
        return sum(len(d) for d in self.decisions)

    def add(self, res: StepResult, extras: dict[str, torch.Tensor] | None) -> None:
        """One collector step. `extras` rows belong to the envs in res.new_chunk (ascending env order)."""
        rows = np.flatnonzero(res.new_chunk)
        if len(rows):
            if extras is None:
                raise ValueError("RolloutStorage.add: envs got new chunks but the algorithm returned no extras")
            for i, n in enumerate(rows):
                self.decisions[n].append({"obs": res.obs[n].copy(), "reward": 0.0,
                                          "extras": {k: v[i].detach().cpu() for k, v in extras.items()}})
        for n in range(self.N):
            if not self.decisions[n]:
                raise RuntimeError(f"env {n} acted without a decision in this rollout (collector not flushed)")
            d = self.decisions[n][-1]
            d["reward"] += float(res.rewards[n])
            d["next_obs"] = res.next_obs[n].copy()
            d["terminated"] = bool(res.terminated[n])
            d["ended"] = bool(res.terminated[n] or res.truncated[n])
        self.steps += 1

    def batch(self, device: torch.device) -> RolloutBatch:
        flat = [(n, d) for n in range(self.N) for d in self.decisions[n]]
        if not flat:
            raise ValueError("RolloutStorage.batch: empty rollout")
        last = np.cumsum([len(d) for d in self.decisions]) - 1  # index of each env's last decision
        cut = np.array([d["ended"] for _, d in flat])
        cut[last[[len(d) > 0 for d in self.decisions]]] = True
        as_t = lambda x, dt=torch.float32: torch.as_tensor(np.asarray(x), dtype=dt, device=device)  # noqa: E731
        keys = flat[0][1]["extras"].keys()
        return RolloutBatch(
            obs=as_t(np.stack([d["obs"] for _, d in flat])), next_obs=as_t(np.stack([d["next_obs"] for _, d in flat])),
            rewards=as_t([d["reward"] for _, d in flat]),
            terminated=as_t([d["terminated"] for _, d in flat], torch.bool),
            ended=as_t([d["ended"] for _, d in flat], torch.bool), cut=as_t(cut, torch.bool),
            env=as_t([n for n, _ in flat], torch.int64),
            extras={k: torch.stack([d["extras"][k] for _, d in flat]).to(device) for k in keys},
        )
