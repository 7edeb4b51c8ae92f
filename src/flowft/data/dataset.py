"""The in-memory demonstration store every reader produces: episodes flattened into arrays plus `episode_ends`
(the zarr / EpisodeStore model). Readers live in flowft.data.readers, one module per file format."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from flowft.errors import DataError


@dataclass
class DemoDataset:
    """Episodes flattened into arrays. T = total steps over all episodes, E = episodes."""

    obs: np.ndarray  # [T, Do]
    actions: np.ndarray  # [T, Da]
    rewards: np.ndarray  # [T]
    episode_ends: np.ndarray  # [E] exclusive end index of each episode
    episode_success: np.ndarray  # [E] bool
    env_meta: dict
    demo_meta: dict = field(default_factory=dict)
    """How the demos were made (`data.attrs["demo_style"]`: style, its parameters, expert success), if recorded."""

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    def sample_chunks(self, batch_size: int, chunk_len: int, rng: np.random.Generator):
        """Uniform chunk starts over all steps -> (obs [B, Do], actions [B, H, Da], valid [B, H]) tensors.
        Steps past the episode end are invalid and repeat the episode's last action (masked in the CFM loss)."""
        T = len(self.obs)
        start = rng.integers(0, T, size=batch_size)
        ep = np.searchsorted(self.episode_ends, start, side="right")
        end = self.episode_ends[ep]  # exclusive
        idx = start[:, None] + np.arange(chunk_len)  # [B, H]
        valid = idx < end[:, None]
        idx = np.minimum(idx, end[:, None] - 1)
        t = torch.from_numpy
        return t(self.obs[start]), t(self.actions[idx]), t(valid.astype(np.float32))


class EpisodeCollector:
    """Accumulates validated episodes for the readers (success filter, episode cap, concatenation)."""

    def __init__(self, only_success: bool, max_episodes: int | None):
        self.only_success, self.max_episodes = only_success, max_episodes
        self.obs: list[np.ndarray] = []
        self.acts: list[np.ndarray] = []
        self.rews: list[np.ndarray] = []
        self.succ: list[bool] = []
        self.seen = 0
        """Episodes offered (kept or filtered), for the 'no successful episodes' message."""

    def add(self, o: np.ndarray, a: np.ndarray, r: np.ndarray, ok: bool) -> bool:
        """Keep the episode unless filtered; returns True once the cap is reached."""
        self.seen += 1
        if not (self.only_success and not ok):
            self.obs.append(o); self.acts.append(a); self.rews.append(r); self.succ.append(ok)  # noqa: E702
        return self.max_episodes is not None and len(self.obs) >= self.max_episodes

    def build(self, where, env_meta: dict) -> DemoDataset:
        if not self.obs:
            if self.only_success and self.seen:
                rule = env_meta.get("success_rule", "")
                raise DataError(f"{where}: none of {self.seen} episodes counts as successful"
                                f"{f' (success rule: {rule})' if rule else ''}; choose the rule that fits the data "
                                "(--success-rule flag/terminal/reward/all, --success-key, --success-reward; "
                                "docs/data.md) or --no-only-success")
            raise DataError(f"{where}: no {'successful ' if self.only_success else ''}episodes to read")
        return DemoDataset(np.concatenate(self.obs), np.concatenate(self.acts), np.concatenate(self.rews),
                           np.cumsum([len(a) for a in self.acts]), np.array(self.succ, dtype=bool), env_meta)
