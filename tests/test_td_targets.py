"""Chunked H-step TD targets against hand-computed values."""

import pytest
import torch

from flowft.critics.targets import chunk_returns, chunk_validity, td_target

G = 0.9


def test_full_chunk_no_terminal():
    r = torch.tensor([[-1.0, -1.0, -1.0]])
    z = torch.zeros(1, 3)
    R, disc, valid = chunk_returns(r, z, z, G)
    assert R.item() == pytest.approx(-1 - 0.9 - 0.81)
    assert disc.item() == pytest.approx(0.9**3)
    assert valid.tolist() == [[1, 1, 1]]
    assert td_target(R, disc, torch.tensor([-5.0])).item() == pytest.approx(-2.71 + 0.729 * -5.0)


def test_terminal_inside_chunk_stops_reward_and_bootstrap():
    # success at step 1 (reward 0, terminated); step 2 belongs to the next episode and is ignored
    r = torch.tensor([[-1.0, 0.0, -7.0]])
    term = torch.tensor([[0.0, 1.0, 0.0]])
    R, disc, valid = chunk_returns(r, term, term, G)
    assert valid.tolist() == [[1, 1, 0]]
    assert R.item() == pytest.approx(-1.0)
    assert disc.item() == 0.0
    assert td_target(R, disc, torch.tensor([-100.0])).item() == pytest.approx(-1.0)


def test_truncation_inside_chunk_bootstraps_with_gamma_power_of_valid_steps():
    r = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    ends = torch.tensor([[0.0, 1.0, 0.0, 0.0]])  # time limit at step 1
    R, disc, _ = chunk_returns(r, torch.zeros(1, 4), ends, G)
    assert R.item() == pytest.approx(-1.9)
    assert disc.item() == pytest.approx(0.81)


def test_terminal_on_last_step_and_batch_independence():
    r = torch.tensor([[-1.0, -1.0], [-1.0, 0.0]])
    term = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    R, disc, _ = chunk_returns(r, term, term, G)
    assert R.tolist() == pytest.approx([-1.9, -1.0])
    assert disc.tolist() == pytest.approx([0.81, 0.0])


def test_validity_mask():
    ends = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]])
    assert chunk_validity(ends).tolist() == [[1, 1, 1, 0, 0]]
