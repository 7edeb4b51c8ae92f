"""Generalised advantage estimation over env decisions, and DPPO's running reward scale (algorithm_reference §3).

One "decision" is one executed action chunk (DPPO's env step of the two-level MDP): its reward is the sum of the
rewards of the actions executed from it (dppo MultiStep wrapper, `reward_agg_method: sum`). Decisions are stored
flat and env-major (each env's decisions consecutive, in time order); `cut` marks where the recursion stops (an
episode boundary, or the last decision of an env in this rollout). Shapes: D decisions, N envs.
"""

from __future__ import annotations

import numpy as np
import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        cut: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) over [D] decisions -> (advantages [D], returns [D] = advantages + values).

    delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - cut_t) * A_{t+1}
    next_values[t] = V(s'_t) of the observation after decision t: the final observation when the episode ended, so
    truncated episodes and the rollout end bootstrap with V (only a termination zeroes it). Unlike the dppo
    reference, truncations are not treated as continuing into the next episode's first state.
    """
    D = rewards.shape[0]
    for name, x in (("values", values), ("next_values", next_values), ("terminated", terminated), ("cut", cut)):
        if x.shape != rewards.shape:
            raise ValueError(f"gae: {name} has shape {tuple(x.shape)}, rewards {tuple(rewards.shape)}")
    not_term, not_cut = 1.0 - terminated.to(values.dtype), 1.0 - cut.to(values.dtype)
    delta = rewards + gamma * not_term * next_values - values  # [D]
    adv = torch.empty_like(delta)
    running = torch.zeros((), dtype=delta.dtype, device=delta.device)
    for t in range(D - 1, -1, -1):
        running = delta[t] + gamma * lam * not_cut[t] * running
        adv[t] = running
    return adv, adv + values


class RunningReturnScaler:
    """DPPO `reward_scale_running`: divide rewards by the running std of each env's discounted return
    (dppo util/reward_scaling.py, like gymnasium's NormalizeReward). State is plain floats (exact resume)."""

    def __init__(self, gamma: float, eps: float = 1e-8):
        self.gamma, self.eps = gamma, eps
        self.ret = np.zeros(0)  # [N] discounted return of each env's current episode (grows to the envs seen)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, rewards: np.ndarray, env: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """rewards, env index, episode-ended flag: [D] env-major in time order -> scaled rewards [D]."""
        if len(env) and env.max() >= len(self.ret):
            self.ret = np.concatenate([self.ret, np.zeros(int(env.max()) + 1 - len(self.ret))])
        rets = np.empty(len(rewards))
        for i, (r, n, e) in enumerate(zip(rewards, env, ended)):
            self.ret[n] = self.ret[n] * self.gamma + r
            rets[i] = self.ret[n]
            if e:
                self.ret[n] = 0.0
        if len(rets):  # parallel-variance merge of the batch into the running moments
            b_mean, b_var, b_n = float(rets.mean()), float(rets.var()), len(rets)
            delta, tot = b_mean - self.mean, self.count + b_n
            m2 = self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / tot
            self.mean, self.var, self.count = self.mean + delta * b_n / tot, m2 / tot, tot
        return rewards / np.sqrt(self.var + self.eps)

    def state(self) -> dict:
        return {"ret": [float(x) for x in self.ret], "mean": self.mean, "var": self.var, "count": self.count}

    def load_state(self, s: dict) -> None:
        self.ret = np.asarray(s["ret"], np.float64)
        self.mean, self.var, self.count = float(s["mean"]), float(s["var"]), float(s["count"])
