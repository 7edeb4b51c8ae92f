"""Critic-quality diagnostic (critics/diagnostics.py): Monte-Carlo returns, ranks, metrics, buffer episodes, and the
train/critic_diag/* rows of a real run (exact under resume, no effect on training)."""

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from flowft.critics.diagnostics import (critic_diagnostic, critic_quality, discounted_returns,
                                        episode_chunk_returns, rankdata, spearman)
from flowft.data.buffer import ReplayBuffer
from flowft.presets import train_preset
from flowft.registry import algorithm_names, get_algorithm
from helpers import final_weights, full_and_resumed_runs, make_bc_checkpoint, tiny_train_config

# ------------------------------------------------------------------------------------------------- pure math


def test_discounted_returns_by_hand():
    assert discounted_returns(np.array([1.0, 2.0, 3.0]), 0.5).tolist() == [2.75, 3.5, 3.0]
    assert discounted_returns(np.array([1.0, 2.0, 3.0]), 1.0).tolist() == [6.0, 5.0, 3.0]
    assert discounted_returns(np.zeros(0), 0.9).shape == (0,)


def test_chunk_returns_of_a_terminated_episode_are_all_complete():
    starts, G, complete = episode_chunk_returns(np.array([0.0, 0.0, 0.0, 0.0, 1.0]), True, H=2, gamma=0.5)
    assert starts.tolist() == [0, 2, 4]  # the last chunk is partial (the episode ended inside it)
    assert G.tolist() == [0.0625, 0.25, 1.0]
    assert complete.all()


def test_truncated_episode_censors_chunks_whose_bootstrapped_tail_is_heavy():
    # toy-like: -1 per step, time limit 12, H = 4, gamma = 0.5; tail weights gamma^(T - t) = 0.5^12, 0.5^8, 0.5^4
    starts, G, complete = episode_chunk_returns(-np.ones(12), False, H=4, gamma=0.5, tail_weight=0.05)
    assert starts.tolist() == [0, 4, 8]
    assert G.tolist() == pytest.approx([-2 * (1 - 0.5**12), -2 * (1 - 0.5**8), -1.875])
    assert complete.tolist() == [True, True, False]  # 0.5^4 = 0.0625 > 0.05
    _, _, complete = episode_chunk_returns(-np.ones(12), False, H=4, gamma=1.0)
    assert not complete.any()  # undiscounted: the unseen tail always matters


def test_rankdata_averages_ties():
    assert rankdata(np.array([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]
    assert rankdata(np.array([3.0, 3.0, 3.0])).tolist() == [2.0, 2.0, 2.0]


def test_spearman_known_answers():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # y ranks [1, 2, 3.5, 5, 3.5]: centred products 4+1+0+2+1 = 8, sums of squares 10 and 9.5 (scipy agrees)
    assert spearman(x, np.array([5.0, 6.0, 7.0, 8.0, 7.0])) == pytest.approx(8 / math.sqrt(95))
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)  # monotone, not linear
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(5))) and math.isnan(spearman(x[:1], x[:1]))


def test_metrics_of_perfect_offset_pessimistic_and_shuffled_critics():
    rng = np.random.default_rng(0)
    G = rng.normal(size=400)
    complete = np.ones(400, bool)
    perfect = critic_quality(np.stack([G, G]), G, complete)
    assert perfect["bias"] == pytest.approx(0.0, abs=1e-12) and perfect["mae"] == pytest.approx(0.0, abs=1e-12)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["n_chunks"] == 400
    offset = critic_quality(np.stack([G + 0.7, G + 0.7]), G, complete)
    assert offset["bias"] == pytest.approx(0.7) and offset["mae"] == pytest.approx(0.7)
    assert offset["spearman"] == pytest.approx(1.0)
    heads = critic_quality(np.stack([G - 1.0, G + 1.0]), G, complete)  # head mean exact, min head 1 too low
    assert heads["bias"] == pytest.approx(0.0, abs=1e-12) and heads["bias_min"] == pytest.approx(-1.0)
    shuffled = critic_quality(rng.permutation(G)[None], G, complete)
    assert abs(shuffled["spearman"]) < 0.15


def test_censored_chunks_are_reported_apart():
    G, q = np.array([1.0, 2.0, 0.0, 0.0]), np.array([[1.5, 2.5, 3.0, 5.0]])
    out = critic_quality(q, G, np.array([True, True, False, False]))
    assert out["n_chunks"] == 2 and out["bias"] == pytest.approx(0.5) and out["spearman"] == pytest.approx(1.0)
    assert out["censored_n_chunks"] == 2 and out["censored_bias"] == pytest.approx(4.0)
    assert out["censored_q_mean"] == pytest.approx(4.0) and out["censored_mc_return_mean"] == 0.0
    only_censored = critic_quality(q, G, np.zeros(4, bool))
    assert only_censored["n_chunks"] == 0 and "bias" not in only_censored and "spearman_all" in only_censored


# ------------------------------------------------------------------------------------ buffer episodes + glue

def step(buf, t, rewards, term=(), trunc=()):
    """One vector step of a buffer whose obs = (env, absolute step) and action = absolute step."""
    N = buf.N
    obs = np.stack([np.arange(N), np.full(N, t)], 1).astype(np.float32)
    buf.add_batch(obs, np.full((N, 1), t, np.float32), np.asarray(rewards, np.float32),
                  np.array([n in term for n in range(N)]), np.array([n in trunc for n in range(N)]), obs + 0.5,
                  np.zeros(N, bool))


def test_finished_episodes_in_end_order_and_never_a_partly_overwritten_one():
    buf = ReplayBuffer(2, 40, 2, 1, 2)  # C = 20 per env
    for t in range(10):  # env 0 ends at steps 2 and 6 (truncated), env 1 at step 4
        step(buf, t, [0.0, 0.0], term={0} if t == 2 else {1} if t == 4 else set(), trunc={0} if t == 6 else set())
    assert buf.finished_episodes(10) == [(0, 0, 3), (1, 0, 5), (0, 3, 7)]  # running episodes are never returned
    assert buf.finished_episodes(2) == [(1, 0, 5), (0, 3, 7)] and buf.finished_episodes(0) == []
    for t in range(10, 25):  # ring wraps (total 25 > C): env 0's episode [0, 3) is overwritten
        step(buf, t, [0.0, 0.0], term={0, 1} if t == 22 else set())
    # stored steps are [5, 25): env 0's [3, 7) began in overwritten slots; env 1's [5, 23) is whole, but the end
    # that dates its start (step 4) is overwritten, so it cannot be told apart from one that began earlier
    assert buf.finished_episodes(10) == [(0, 7, 23)]


class TableCritic:
    """An 'algorithm' whose Q is looked up from obs = (env, step): q_of[(env, step)] + offset for every head."""

    def __init__(self, q_of: dict, offset=(0.0,), gamma: float = 0.9):
        self.q_of, self.offset, self.device = q_of, torch.tensor(offset)[:, None], torch.device("cpu")
        self.cfg = type("Cfg", (), {"gamma": gamma})()
        self.seen_actions = []

    def critic_values(self, obs, actions):
        self.seen_actions.append(actions)
        q = torch.tensor([self.q_of[(int(e), int(t))] for e, t in obs.tolist()], dtype=torch.float32)
        return q[None] + self.offset


def test_diagnostic_of_the_true_return_critic_is_exact():
    gamma, H = 0.9, 3
    buf = ReplayBuffer(2, 200, 2, 1, H)
    rng = np.random.default_rng(1)
    ends = {0: {4: "term", 11: "trunc", 30: "term"}, 1: {7: "term", 20: "term"}}
    rewards = rng.normal(size=(40, 2))
    for t in range(40):
        step(buf, t, rewards[t], term={n for n in ends if ends[n].get(t) == "term"},
             trunc={n for n in ends if ends[n].get(t) == "trunc"})
    true_q = {}  # the hand-rolled return-to-go of every step of every finished episode
    for n, ep_ends in ends.items():
        start = 0
        for end in sorted(ep_ends):
            for t in range(start, end + 1):
                true_q[(n, t)] = sum(gamma ** (k - t) * rewards[k, n] for k in range(t, end + 1))
            start = end + 1
    algo = TableCritic(true_q, gamma=gamma)
    out = critic_diagnostic(algo, buf, 10)
    assert out["n_episodes"] == 5
    # chunk starts every H steps from each episode start: [0,5) 2, [5,12) 3, [12,31) 7, [0,8) 3, [8,21) 5 chunks;
    # the truncated [5, 12) has tails 0.9^7, 0.9^4, 0.9^1 > 0.05: all 3 censored
    assert out["n_chunks"] == 17 and out["censored_n_chunks"] == 3
    assert out["bias"] == pytest.approx(0.0, abs=1e-5) and out["mae"] == pytest.approx(0.0, abs=1e-5)
    assert out["spearman"] == pytest.approx(1.0) and out["censored_bias"] == pytest.approx(0.0, abs=1e-5)
    acts = torch.cat(algo.seen_actions)  # executed chunks: steps t..t+H-1, padded with the episode's last action
    assert acts[0, :, 0].tolist() == [0, 1, 2] and acts[1, :, 0].tolist() == [3, 4, 4]
    off = critic_diagnostic(TableCritic(true_q, offset=(0.25, 0.75), gamma=gamma), buf, 10)
    assert off["bias"] == pytest.approx(0.5, abs=1e-5) and off["bias_min"] == pytest.approx(0.25, abs=1e-5)
    strided = critic_diagnostic(TableCritic(true_q, gamma=gamma), buf, 10, max_chunks=8)  # every 3rd chunk
    assert strided["n_chunks"] + strided["censored_n_chunks"] == 7 and strided["bias"] == pytest.approx(0, abs=1e-5)
    assert critic_diagnostic(TableCritic(true_q), ReplayBuffer(2, 200, 2, 1, H), 10) == {}  # nothing finished
    no_critic = type("NoCritic", (), {"critic_values": lambda self, o, a: None, "device": torch.device("cpu")})()
    assert critic_diagnostic(no_critic, buf, 10) == {}


@pytest.mark.parametrize("name", algorithm_names())
def test_every_off_policy_algorithm_exposes_its_chunk_critic(name):
    """critic_values: [M, n] per head for every replay-buffer algorithm, None for on-policy ones (DPPO: V(s))."""
    spec = get_algorithm(name)
    cfg = train_preset(name, "toy", "tiny").algo
    algo = spec.cls(cfg, 4, 2, 3, torch.device("cpu"), 0)
    q = algo.critic_values(torch.randn(5, 4), torch.randn(5, 3, 2))
    if spec.cls.on_policy:
        assert q is None
    else:
        assert q.shape == (cfg.critic.num_heads, 5) and not q.requires_grad and 0 < cfg.gamma <= 1


# --------------------------------------------------------------------------------------------- training run

@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    return make_bc_checkpoint(tmp_path_factory.mktemp("bc"))


def test_training_logs_critic_diag_exactly_under_resume_without_changing_training(bc, tmp_path):
    cfg = tiny_train_config(bc, tmp_path)
    cfg = replace(cfg, run=replace(cfg.run, log=replace(cfg.run.log, log_every=160)))
    full, _, part, _ = full_and_resumed_runs(cfg, stop_at=320)
    rows = list(csv.DictReader((full.run_dir / "metrics.csv").open()))
    keys = ("bias", "bias_min", "mae", "spearman", "spearman_all", "q_mean", "mc_return_mean", "n_chunks",
            "censored_n_chunks", "n_episodes")
    logged = [r for r in rows if r.get("train/critic_diag/n_episodes")]
    assert len(logged) >= 3
    for r in logged:
        assert all(r[f"train/critic_diag/{k}"] != "" for k in keys), r
        assert float(r["train/critic_diag/n_episodes"]) == cfg.run.critic_diag_episodes
    resumed = {r["env_steps"]: r for r in csv.DictReader((part.run_dir / "metrics.csv").open())}
    for r in logged:  # the resumed run logs the same values (buffer and weights are restored exactly)
        assert {k: v for k, v in r.items() if "critic_diag" in k} == \
               {k: v for k, v in resumed[r["env_steps"]].items() if "critic_diag" in k}, r["env_steps"]
    # switched off: no keys, and the same weights (the diagnostic draws no RNG and changes no state)
    off = tiny_train_config(bc, tmp_path, run_name="off", critic_diag_episodes=0)
    off = replace(off, run=replace(off.run, log=replace(off.run.log, log_every=160)))
    from flowft.train.loop import Trainer

    t = Trainer(off)
    t.run()
    assert not any("critic_diag" in k for k in next(csv.DictReader((t.run_dir / "metrics.csv").open())))
    a, b = final_weights(full.run_dir), final_weights(t.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
