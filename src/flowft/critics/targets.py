"""Chunked H-step TD targets (QC-style, algorithm_reference §1.3) with terminal and validity masks.

For a sequence starting at t with rewards r_{t..t+H-1}: steps after an episode end are invalid; the target is
    y = sum_{i<n} gamma^i r_{t+i}  +  gamma^n * (1 - terminated) * Qbar(s_boot, a')
where n = number of valid steps and s_boot = next obs of the last valid step. For chunks that do not cross an
episode end this is exactly the reference's R + gamma^H * mask * Qbar. A truncated episode bootstraps; a
terminated one does not.
"""

from __future__ import annotations

import torch


def chunk_validity(ends: torch.Tensor) -> torch.Tensor:
    """ends [B, H] (terminated or truncated at step t+i) -> valid [B, H]: step i happens in the same episode."""
    before = torch.cumsum(ends.float(), dim=-1) - ends.float()  # ends strictly before step i
    return (before == 0).float()


def chunk_returns(
    rewards: torch.Tensor, terminals: torch.Tensor, ends: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rewards/terminals/ends [B, H] -> (R [B], bootstrap_discount [B], valid [B, H]).

    bootstrap_discount = gamma^n * (1 - terminated within the valid steps).
    """
    valid = chunk_validity(ends)
    H = rewards.shape[-1]
    powers = gamma ** torch.arange(H, dtype=torch.float32, device=rewards.device)  # [H]
    R = (valid * powers * rewards.float()).sum(-1)
    n = valid.sum(-1)
    not_terminated = 1.0 - (valid * terminals.float()).sum(-1).clamp(max=1.0)
    return R, (gamma**n) * not_terminated, valid


def td_target(R: torch.Tensor, discount: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
    """y = R + discount * Qbar(s_boot, a'): all [B]."""
    return R + discount * next_q
