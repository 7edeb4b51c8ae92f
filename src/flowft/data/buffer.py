"""CPU replay buffer of per-step transitions, one ring per env, sampled as length-H chunk sequences.

Success tagging (algorithm_reference §1.1): when an episode ends with info["success"], every transition of that
episode is flagged; the flags are the success buffer D_succ used by OGPO+ (`ReplayBuffer.sample(success=True)`).
Shapes: N envs, C capacity per env, Do, Da, H chunk length, B batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from flowft.errors import CheckpointError
from flowft.types import ChunkBatch

_ARRAYS = ("obs", "actions", "rewards", "terminated", "ends", "next_obs", "success")


class ReplayBuffer:
    def __init__(self, num_envs: int, capacity: int, obs_dim: int, act_dim: int, chunk_len: int, seed: int = 0):
        if capacity < num_envs * chunk_len:
            raise ValueError(f"buffer capacity {capacity} must be >= num_envs*chunk_len = {num_envs * chunk_len}")
        N, C = num_envs, capacity // num_envs
        self.N, self.C, self.H, self.obs_dim, self.act_dim = N, C, chunk_len, obs_dim, act_dim
        self.obs = np.zeros((N, C, obs_dim), np.float32)
        self.next_obs = np.zeros((N, C, obs_dim), np.float32)
        self.actions = np.zeros((N, C, act_dim), np.float32)
        self.rewards = np.zeros((N, C), np.float32)
        self.terminated = np.zeros((N, C), bool)
        self.ends = np.zeros((N, C), bool)
        self.success = np.zeros((N, C), bool)
        self.total = 0  # steps written per env (envs advance in lockstep)
        self.ep_start = np.zeros(N, np.int64)  # absolute index of each env's current episode start
        self.num_success_episodes = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.N * min(self.total, self.C)

    def add_batch(self, obs, actions, rewards, terminated, truncated, next_obs, success) -> None:
        """One vector-env step: obs/next_obs [N, Do], actions [N, Da], rewards/terminated/truncated/success [N].
        `next_obs` must be the true final observation for envs whose episode just ended."""
        obs, next_obs, actions = np.asarray(obs, np.float32), np.asarray(next_obs, np.float32), np.asarray(actions, np.float32)
        if obs.shape != (self.N, self.obs_dim) or next_obs.shape != obs.shape:
            raise ValueError(f"obs must be [{self.N}, {self.obs_dim}], got {obs.shape} / next_obs {next_obs.shape}")
        if actions.shape != (self.N, self.act_dim):
            raise ValueError(f"actions must be [{self.N}, {self.act_dim}], got {actions.shape}")
        for name, arr in (("obs", obs), ("next_obs", next_obs), ("actions", actions), ("rewards", rewards)):
            if not np.isfinite(arr).all():
                raise ValueError(f"non-finite values in transition field '{name}'")
        p = self.total % self.C
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        self.obs[:, p], self.next_obs[:, p], self.actions[:, p] = obs, next_obs, actions
        self.rewards[:, p] = rewards
        self.terminated[:, p], self.ends[:, p] = terminated, terminated | truncated
        self.success[:, p] = False
        for n in np.flatnonzero(terminated | truncated):
            if bool(np.asarray(success)[n]):
                self._tag_episode(n, self.ep_start[n], self.total + 1)
                self.num_success_episodes += 1
            self.ep_start[n] = self.total + 1
        self.total += 1

    def _tag_episode(self, n: int, start: int, stop: int) -> None:
        start = max(start, stop - self.C)  # older steps were overwritten
        self.success[n, np.arange(start, stop) % self.C] = True

    # ------------------------------------------------------------------------------------------ sampling
    def _start_range(self) -> tuple[int, int]:
        """Inclusive range of absolute chunk starts whose H slots are written and still stored."""
        return max(0, self.total - self.C), self.total - self.H

    def _success_starts(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._start_range()
        if hi < lo:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        absidx = np.arange(lo, hi + 1)
        env, col = np.nonzero(self.success[:, absidx % self.C])
        return env, absidx[col]

    def can_sample(self, success: bool = False) -> bool:
        if success:
            return self.num_success_episodes > 0 and self._success_starts()[0].size > 0
        lo, hi = self._start_range()
        return hi >= lo

    def sample(self, batch_size: int, success: bool = False) -> ChunkBatch:
        """B chunks uniformly over stored starts (of successful episodes only when `success`)."""
        if not self.can_sample(success):
            raise RuntimeError(f"replay buffer has no {'successful ' if success else ''}chunk to sample yet")
        if success:
            env, absidx = self._success_starts()
            pick = self.rng.integers(0, env.size, size=batch_size)
            return self.gather(env[pick], absidx[pick])
        lo, hi = self._start_range()
        env = self.rng.integers(0, self.N, size=batch_size)
        return self.gather(env, self.rng.integers(lo, hi + 1, size=batch_size))

    def gather(self, env: np.ndarray, start: np.ndarray) -> ChunkBatch:
        """Chunks for explicit (env [B], absolute start [B]) pairs."""
        cols = (start[:, None] + np.arange(self.H)) % self.C  # [B, H]
        rows = env[:, None]
        ends = self.ends[rows, cols]
        valid = np.cumsum(ends, axis=1) - ends == 0  # [B, H] no episode end strictly before step i
        last = valid.sum(1) - 1  # index of the last valid step
        last_col = cols[np.arange(len(env)), last]
        act_cols = np.where(valid, cols, last_col[:, None])  # pad with the last valid action
        t = torch.from_numpy
        return ChunkBatch(
            obs=t(self.obs[env, cols[:, 0]]),
            actions=t(self.actions[rows, act_cols]),
            rewards=t(self.rewards[rows, cols] * valid),
            terminals=t((self.terminated[rows, cols] & valid).astype(np.float32)),
            ends=t((ends & valid).astype(np.float32)),
            valid=t(valid.astype(np.float32)),
            boot_obs=t(self.next_obs[env, last_col]),
        )

    def finished_episodes(self, n: int) -> list[tuple[int, int, int]]:
        """The last `n` episodes to finish whose every step is still stored, as (env, absolute start, absolute
        stop) with stop exclusive, oldest first (ties: lower env first). An episode's start is only known from the
        end before it (or from step 0), so the oldest episode of a ring that has wrapped is never returned."""
        lo = max(0, self.total - self.C)
        absidx = np.arange(lo, self.total)
        eps = []
        for env in range(self.N):
            stops = absidx[self.ends[env, absidx % self.C]] + 1  # one past each episode's last step
            starts = stops[:-1]
            if lo == 0:
                starts = np.concatenate([[0], starts])
            else:  # the first end's episode may have begun in overwritten slots
                stops = stops[1:]
            eps += [(env, int(a), int(b)) for a, b in zip(starts, stops)]
        eps.sort(key=lambda e: (e[2], e[0]))
        return eps[-n:] if n > 0 else []

    # --------------------------------------------------------------------------------------- persistence
    def meta(self) -> dict:
        return {"N": self.N, "C": self.C, "H": self.H, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "total": self.total, "num_success_episodes": self.num_success_episodes,
                "rng": self.rng.bit_generator.state, "rows": self._rows(self.total)}

    def _rows(self, total: int) -> int:
        """Slots written per env: slots past them are still zero, so saving the first `rows` loses nothing (a
        ring that has wrapped is full, and its slots are kept in ring order, `total % C` marking the next write)."""
        return min(total, self.C)

    def save(self, path: str | Path) -> None:
        """Only the written slots [N, rows, ...]: a file grows with the transitions stored, not with the capacity."""
        rows = self._rows(self.total)
        arrays = {k: np.ascontiguousarray(getattr(self, k)[:, :rows]) for k in _ARRAYS}
        arrays["ep_start"] = self.ep_start
        save_file(arrays, str(path), metadata={"flowft_buffer": json.dumps(self.meta())})

    def load(self, path: str | Path) -> None:
        """Restore in place; the buffer must have been built with the same shapes. Files of earlier versions hold
        all C slots per env and load too."""
        meta, arrays = _read_buffer_file(Path(path))
        for key in ("N", "C", "H", "obs_dim", "act_dim"):
            if meta[key] != getattr(self, key):
                raise IncompatibleBufferError(f"replay buffer file {path}: '{key}' is {meta[key]}, this run expects "
                                              f"{getattr(self, key)}")
        total = meta.get("total")
        if not isinstance(total, int) or total < 0:
            raise CheckpointError(f"replay buffer file {path}: metadata 'total' is {total!r}, not a step count")
        n_succ = meta.get("num_success_episodes")
        if not isinstance(n_succ, int) or n_succ < 0:
            raise CheckpointError(f"replay buffer file {path}: metadata 'num_success_episodes' is {n_succ!r}")
        rows = self._rows(total)
        for k in _ARRAYS:  # the metadata must describe the arrays: an edited `total` would sample empty slots
            got = arrays[k].shape[:2] if k in arrays else None
            # a missing array (got None) must not match a None placeholder: earlier-version files only add (N, C)
            if got not in [(self.N, rows)] + ([(self.N, self.C)] if "rows" not in meta else []):
                raise CheckpointError(f"replay buffer file {path}: '{k}' holds {got} [envs, slots], its metadata "
                                      f"(total {total}) says {(self.N, rows)} (damaged or edited file)")
        if arrays.get("ep_start", np.zeros(0)).shape != (self.N,) or not (arrays["ep_start"] <= total).all():
            raise CheckpointError(f"replay buffer file {path}: episode starts do not fit total {total} (damaged)")
        try:  # checked on a scratch generator: nothing of this buffer changes unless the whole file is sound
            np.random.default_rng().bit_generator.state = meta["rng"]
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"replay buffer file {path}: unreadable sampler RNG state ({e})") from e
        for k in _ARRAYS:
            dst = getattr(self, k)
            dst[...] = 0
            dst[:, :arrays[k].shape[1]] = arrays[k]
        self.ep_start[...] = arrays["ep_start"]
        self.total, self.num_success_episodes = total, n_succ
        self.rng.bit_generator.state = meta["rng"]


class IncompatibleBufferError(CheckpointError, ValueError):
    """A replay buffer file from a run with other shapes."""


def _read_buffer_file(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {})["flowft_buffer"])
        arrays = load_file(str(path))
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"replay buffer file {path}: unreadable ({type(e).__name__}: {str(e)[:160]})") from e
    if not isinstance(meta, dict) or not {"N", "C", "H", "obs_dim", "act_dim", "rng"} <= set(meta):
        raise CheckpointError(f"replay buffer file {path}: metadata lacks the buffer shapes (damaged file)")
    return meta, arrays
