"""Typed containers passed between the buffer, the training loop and the algorithms (no string keys)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class ChunkBatch:
    """B length-H sequences sampled from a replay buffer or a demo dataset.

    Steps after an episode end inside the chunk are invalid (valid = 0) and their actions repeat the last valid
    action, so a chunk fed to a critic is always a plausible open-loop command.
    """

    obs: torch.Tensor  # [B, Do]   observation at the chunk start
    actions: torch.Tensor  # [B, H, Da]
    rewards: torch.Tensor  # [B, H]
    terminals: torch.Tensor  # [B, H]  1 where the env *terminated* at that step
    ends: torch.Tensor  # [B, H]  1 where the episode ended (terminated or truncated)
    valid: torch.Tensor  # [B, H]  1 for steps inside the chunk-start's episode
    boot_obs: torch.Tensor  # [B, Do]  next observation after the last valid step

    def to(self, device: torch.device | str) -> "ChunkBatch":
        return ChunkBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})
