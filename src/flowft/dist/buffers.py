"""The learner's replay buffer in distributed acting: one ReplayBuffer ring per env worker, sampled as one buffer.

A ReplayBuffer advances its envs in lockstep (one `add_batch` writes every env's slot), but Ray workers deliver
their chunks independently, so each worker gets its own ring and `sample` draws every chunk from the ring that
holds it: how many of the B chunks come from each ring is multinomial in the rings' sampleable starts, so a chunk is
drawn uniformly over all stored chunks, as from one buffer. Shapes: W workers, N envs per worker, B batch.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from flowft.data.buffer import ReplayBuffer
from flowft.errors import CheckpointError
from flowft.types import ChunkBatch


class WorkerBuffers:
    def __init__(self, workers: int, num_envs: int, capacity: int, obs_dim: int, act_dim: int, chunk_len: int,
                 seed: int = 0):
        """`capacity` is the total over all rings (as --run.buffer-capacity)."""
        per = capacity // workers
        seeds = np.random.SeedSequence([seed, 7]).generate_state(workers + 1)
        self.rings = [ReplayBuffer(num_envs, per, obs_dim, act_dim, chunk_len, seed=int(s)) for s in seeds[:-1]]
        self.rng = np.random.default_rng(int(seeds[-1]))  # ring choice and the shuffle of the merged batch
        self.H, self.obs_dim, self.act_dim = chunk_len, obs_dim, act_dim

    def __len__(self) -> int:
        return sum(len(r) for r in self.rings)

    def add_chunk(self, worker: int, chunk: dict) -> None:
        """A worker's message: T vector steps, arrays [T, N, ...] (dist/worker.py EnvWorker.collect)."""
        ring = self.rings[worker]
        for t in range(chunk["rewards"].shape[0]):
            ring.add_batch(chunk["obs"][t], chunk["actions"][t], chunk["rewards"][t], chunk["terminated"][t],
                           chunk["truncated"][t], chunk["next_obs"][t], chunk["success"][t])

    def cut_episodes(self, worker: int) -> None:
        """A worker died: its envs restart fresh episodes, so the episodes open in its ring end at their last stored
        step (a truncation: the critic bootstraps from its next obs), and no chunk spans the old and new episodes."""
        ring = self.rings[worker]
        if ring.total:
            ring.ends[:, (ring.total - 1) % ring.C] = True
            ring.ep_start[:] = ring.total  # the ring's episode bookkeeping (success tagging starts here)

    # ------------------------------------------------------------------------------------------ sampling
    def _weights(self, success: bool) -> np.ndarray:
        """Sampleable chunk starts per ring [W] (of successful episodes when `success`)."""
        out = []
        for r in self.rings:
            if success:  # ReplayBuffer's own index of success starts: the uniform draw it makes itself
                out.append(r._success_starts()[0].size if r.can_sample(True) else 0)
            else:
                lo, hi = r._start_range()
                out.append(max(0, hi - lo + 1) * r.N)
        return np.asarray(out, np.float64)

    def can_sample(self, success: bool = False) -> bool:
        return bool(self._weights(success).sum() > 0)

    def sample(self, batch_size: int, success: bool = False) -> ChunkBatch:
        w = self._weights(success)
        if w.sum() <= 0:
            raise RuntimeError(f"replay buffer has no {'successful ' if success else ''}chunk to sample yet")
        counts = self.rng.multinomial(batch_size, w / w.sum())
        parts = [r.sample(int(c), success) for r, c in zip(self.rings, counts) if c > 0]
        perm = torch.from_numpy(self.rng.permutation(batch_size))  # a prefix of the batch is a uniform sample too
        return ChunkBatch(**{k: torch.cat([getattr(p, k) for p in parts])[perm] for k in (f.name for f in fields(ChunkBatch))})

    # critic diagnostic (critics/diagnostics.py): the episodes of one ring (the one with the most finished ones)
    def diagnostic_ring(self) -> ReplayBuffer:
        return max(self.rings, key=lambda r: r.total)

    # --------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """One file (the checkpoint's buffer.safetensors): every ring's arrays under `w<i>.`, their metadata in
        the header. Each ring is written by ReplayBuffer.save, so the format per ring is the single-process one."""
        arrays, metas = {}, []
        with tempfile.TemporaryDirectory() as tmp:
            for i, ring in enumerate(self.rings):
                f = Path(tmp) / f"w{i}.safetensors"
                ring.save(f)
                with safe_open(str(f), framework="numpy") as h:
                    metas.append(h.metadata()["flowft_buffer"])
                arrays.update({f"w{i}.{k}": v for k, v in load_file(str(f)).items()})
        save_file(arrays, str(path), metadata={"flowft_worker_buffers": json.dumps(
            {"rings": metas, "rng": self.rng.bit_generator.state})})

    def load(self, path: str | Path) -> None:
        try:
            with safe_open(str(path), framework="numpy") as h:
                meta = json.loads((h.metadata() or {})["flowft_worker_buffers"])
            arrays = load_file(str(path))
        except (SafetensorError, OSError, KeyError, ValueError) as e:
            raise CheckpointError(f"replay buffer file {path}: not a distributed-run buffer ({type(e).__name__}: "
                                  f"{str(e)[:120]}); a single-process checkpoint resumes without --run.env-workers")
        if len(meta["rings"]) != len(self.rings):
            raise CheckpointError(f"replay buffer file {path}: {len(meta['rings'])} env workers' rings, this run "
                                  f"has --run.env-workers {len(self.rings)} (resume with the run's own value)")
        with tempfile.TemporaryDirectory() as tmp:
            for i, (ring, m) in enumerate(zip(self.rings, meta["rings"])):
                f = Path(tmp) / f"w{i}.safetensors"
                pre = f"w{i}."
                save_file({k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}, str(f),
                          metadata={"flowft_buffer": m})
                ring.load(f)  # ReplayBuffer's own checks of shapes and metadata
        self.rng.bit_generator.state = meta["rng"]
