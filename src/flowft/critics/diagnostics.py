"""Critic-quality diagnostic (train/critic_diag/*, docs/algorithm.md): the critic's Q on the chunks the policy
actually executed vs. the discounted Monte-Carlo returns those chunks then received.

Discounting matches the chunked TD target exactly (critics/targets.py): Q(s_t, a_{t:t+H}) regresses onto
sum_{i<n} gamma^i r_{t+i} + gamma^n (1 - terminated) Qbar(s_{t+n}, .), i.e. per *env step* discounting, so
unrolling it to the episode's end T gives
    G_t = sum_{k=0}^{T-t-1} gamma^k r_{t+k}     (+ gamma^(T-t) V(s_T) when the episode was truncated).
A terminated episode's G_t is the complete target. A truncated (time-limit) one bootstraps a tail that no Monte-Carlo
return sees, so its chunks are "censored": those with gamma^(T-t) > TAIL_WEIGHT are reported separately
(censored_*); the rest (at most a TAIL_WEIGHT share of |V| missing) count as complete.
Chunks start every H env steps from each episode's start, as the collector executes them (train/collector.py).
The returns are those of the behaviour policy when the data was collected, so even a perfect critic of the current
policy is not exactly unbiased; the diagnostic is for gross errors and ranking (policy collapse), not for 1e-3.
Pure functions of the stored data and the current weights: no RNG, no side effects (exact resume is unaffected).
Shapes: M heads, n chunks, T episode length, H chunk length.
"""

from __future__ import annotations

import numpy as np
import torch

TAIL_WEIGHT = 0.05
"""A truncated episode's chunk counts as complete when its unseen bootstrapped tail has weight gamma^(T-t) <= this."""
MAX_CHUNKS = 256
"""Chunks scored per log row at most (~0.3 s for the default 10 x 4x512 ensemble on 2 busy CPU cores)."""


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """rewards [T] of one episode -> G [T], G_t = sum_{k>=0} gamma^k r_{t+k} to the episode's end (float64)."""
    G, acc = np.zeros(len(rewards), np.float64), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        G[t] = acc
    return G


def episode_chunk_returns(rewards: np.ndarray, terminated: bool, H: int, gamma: float,
                          tail_weight: float = TAIL_WEIGHT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One finished episode -> (chunk starts [c] relative to its start, G at each start [c], complete [c] bool).
    The last chunk may be partial (the episode ended inside it); it still starts a decision the critic scored."""
    T = len(rewards)
    starts = np.arange(0, T, H)
    G = discounted_returns(rewards, gamma)[starts]
    complete = np.ones(len(starts), bool) if terminated else gamma ** (T - starts) <= tail_weight
    return starts, G, complete


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x [n]; tied values share the average of their ranks (as scipy.stats.rankdata)."""
    _, inv, counts = np.unique(np.asarray(x, np.float64), return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based position of each distinct value's first occurrence
    return (first + (counts + 1) / 2.0)[inv.reshape(-1)]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation = Pearson correlation of the (tie-averaged) ranks; nan when either side is
    constant or there are fewer than 2 points (no ranking to compare)."""
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def critic_quality(q: np.ndarray, G: np.ndarray, complete: np.ndarray) -> dict[str, float]:
    """q [M, n] per-head Q, G [n] Monte-Carlo returns, complete [n] bool -> metrics (keys without prefix).
    bias/bias_min/mae/spearman/q_mean/mc_return_mean use complete chunks only (head mean; bias_min: min over
    heads, the pessimistic aggregation); censored_* the truncated-tail rest, against their partial G (lower bound
    of the true target when rewards are >= 0); spearman_all ranks every chunk, censored G included."""
    q = np.asarray(q, np.float64)
    qm, qmin, G, complete = q.mean(0), q.min(0), np.asarray(G, np.float64), np.asarray(complete, bool)
    out: dict[str, float] = {"n_chunks": float(complete.sum()), "censored_n_chunks": float((~complete).sum())}
    c, z = complete, ~complete
    if c.any():
        out.update({"bias": float((qm[c] - G[c]).mean()), "bias_min": float((qmin[c] - G[c]).mean()),
                    "mae": float(np.abs(qm[c] - G[c]).mean()), "spearman": spearman(qm[c], G[c]),
                    "q_mean": float(qm[c].mean()), "mc_return_mean": float(G[c].mean())})
    if z.any():
        out.update({"censored_bias": float((qm[z] - G[z]).mean()), "censored_q_mean": float(qm[z].mean()),
                    "censored_mc_return_mean": float(G[z].mean())})
    out["spearman_all"] = spearman(qm, G)
    return out


def chunk_mc_returns(buffer, episodes: list[tuple[int, int, int]], gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """buffer (data/buffer.ReplayBuffer), episodes [(env, start, stop)] from its `finished_episodes` -> G [n] and
    complete [n] of every executed chunk, in episode order (chunk starts np.arange(start, stop, H))."""
    per_episode = [episode_chunk_returns(buffer.rewards[e, np.arange(a, b) % buffer.C],
                                         bool(buffer.terminated[e, (b - 1) % buffer.C]), buffer.H, gamma)
                   for e, a, b in episodes]
    return np.concatenate([g for _, g, _ in per_episode]), np.concatenate([c for _, _, c in per_episode])


@torch.no_grad()
def critic_diagnostic(algo, buffer, num_episodes: int, max_chunks: int = MAX_CHUNKS) -> dict[str, float]:
    """Metrics of `algo.critic_values` on the executed chunks of the last `num_episodes` finished episodes of
    `buffer` ({} when the algorithm has no Q(s, a_chunk) critic or no episode has finished yet). The discount is
    the algorithm's `cfg.gamma`, the one its TD targets use. Over `max_chunks` chunks, an evenly strided subset
    is scored: every episode keeps a say (successes and failures both), at a bounded cost per log row."""
    episodes = buffer.finished_episodes(num_episodes)
    if not episodes:
        return {}
    env = np.concatenate([np.full(len(range(a, b, buffer.H)), e) for e, a, b in episodes])
    start = np.concatenate([np.arange(a, b, buffer.H) for _, a, b in episodes])
    keep = np.arange(0, len(env), -(-len(env) // max_chunks))  # ceil stride: at most max_chunks
    # the buffer's own chunk view, exactly what the TD loss sees (after an episode end: last action repeated)
    batch = buffer.gather(env[keep], start[keep])
    q = algo.critic_values(batch.obs.to(algo.device), batch.actions.to(algo.device))
    if q is None:
        return {}
    G, complete = chunk_mc_returns(buffer, episodes, algo.cfg.gamma)
    out = critic_quality(q.float().cpu().numpy(), G[keep], complete[keep])
    out["n_episodes"] = float(len(episodes))
    return out
