"""Data-parallel learner update over torch.distributed: the B states of an update are split over the ranks, each
rank imagines the G chains of its states and back-propagates its share, and the gradients are averaged with an
all-reduce before clipping and the optimiser step, so every rank takes the same step and stays identical.

Launched by `torchrun` (env:// rendezvous; `python -m flowft.dist.ddp` below is the learner benchmark), testable
on CPU with the gloo backend (nccl on GPUs). The algorithm's own update code runs unchanged on every rank; three
things make a W-rank update equal the 1-rank update on the same batch (tests/test_dist.py):
- ShardBuffer: every rank holds the same buffer (same sampler RNG), draws the same global batch and keeps rows
  r::W; strided rows keep a prefix of the global batch (OGPO's ppo_batch_size states) a prefix of every shard.
- ShardedUpdatePath: the update's noise goes through `algo.fast` (train/fastpath.py); this path draws the noise of
  the global batch with the shared generator and keeps this rank's rows, so a state meets the same noise as in the
  1-rank update. Drawing B x G noise on every rank is cheap; the network passes are what is split.
- gradient hooks: each parameter's gradient is averaged over the ranks as soon as backward has accumulated it
  (the mean of shard means is the global mean when shards are equal; it is linear, so several backward passes per
  update, micro-batches and the BC term, average correctly).
Equality holds for losses that are means over states (OGPO's PPO/AWR actor terms, its critic with
drop_partial_chunks off and `target_agg` mean/min/subsample) and for the BC term's mean over valid chunk steps
(re-weighted here by each shard's share of them). A per-sample head draw (subsample_each) and the valid-chunk
weighting of drop_partial_chunks depend on the shard: those updates are still correct averages, not equal draws. Seeding: the update generators are shared by
all ranks (seeded from run.seed); what a rank does alone (its envs, its acting noise) takes `rank_seed`. Only rank 0
logs and writes checkpoints (`is_main`). Shapes: B global batch, b = B / W per rank, G group, d = H*Da.
"""

from __future__ import annotations

import os
from dataclasses import fields

import numpy as np
import torch
import torch.distributed as dist

from flowft.algos.base import Algorithm
from flowft.errors import ConfigError
from flowft.policies.flow import SDESample
from flowft.train.fastpath import UpdatePath
from flowft.types import ChunkBatch


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT); gloo on CPU, nccl with
    CUDA. Returns (rank, world size); (0, 1) without torchrun."""
    if "RANK" not in os.environ:
        return 0, 1
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def leave_group() -> None:
    """Leave the process group cleanly: every rank first waits at a barrier, so none closes its gloo connections
    while a peer is still reading the last collective's result (that race aborted a rank at exit, SIGABRT)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """A rank's own stream (envs, acting): one SeedSequence split by rank, never seed + rank."""
    return int(np.random.SeedSequence([seed, 2_000 + rank]).generate_state(1)[0])


def is_main() -> bool:
    """Only rank 0 logs, evaluates and writes checkpoints."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class ShardBuffer:
    """Rank r's view of a replicated replay buffer: the global batch's rows r::W."""

    def __init__(self, buffer, rank: int, world: int):
        self.buffer, self.rank, self.world = buffer, rank, world

    def can_sample(self, success: bool = False) -> bool:
        return self.buffer.can_sample(success)

    def sample(self, batch_size: int, success: bool = False) -> ChunkBatch:
        if batch_size % self.world:
            raise ConfigError(f"--algo.batch-size {batch_size} must be a multiple of the {self.world} learner ranks")
        b = self.buffer.sample(batch_size, success)
        return ChunkBatch(**{f.name: getattr(b, f.name)[self.rank::self.world] for f in fields(ChunkBatch)})


class ShardedUpdatePath(UpdatePath):
    """`algo.fast` for rank r of W: the global batch's noise, this rank's rows (train/fastpath.UpdatePath)."""

    def __init__(self, base: UpdatePath, rank: int, world: int, group=None):
        self.__dict__.update(base.__dict__)  # same compile mode, precision and compiled functions
        self.rank, self.world, self.group = rank, world, group

    def _rows(self, b: int, G: int, device) -> torch.Tensor:
        """Rows of this rank's b states in a [G * B] noise draw ordered (chain, state): g * B + r + W * j."""
        B = b * self.world
        mine = torch.arange(self.rank, B, self.world, device=device)
        return (torch.arange(G, device=device)[:, None] * B + mine[None]).reshape(-1)

    def sample_sde(self, policy, obs, G, generator, logp=True) -> SDESample:
        if self.cudagraphs:  # as UpdatePath.sample_sde: a new step for CUDA graphs
            torch.compiler.cudagraph_mark_step_begin()
        rows = self._rows(obs.shape[0], G, obs.device)
        x0, eps = policy.sde_noise(obs.shape[0] * self.world * G, obs.device, generator)  # x0 [G*B, d], eps [K, G*B, d]
        x0, eps = x0[rows], eps[:, rows]
        with torch.no_grad():
            s = SDESample(*self.fn["imagine"](policy, obs, x0, eps, self.bf16_nograd))
            if logp and self.bf16_nograd:
                s.logp = self.fn["log_prob"](policy, obs, s.chain, self.bf16_train)
        return s

    def cfm_loss(self, policy, obs, actions, valid, generator):
        """The BC term: the global batch's x0 then t draws, this rank's rows. The loss is a mean over the valid
        chunk steps, so a shard's mean is re-weighted by its share of the global count: averaged over the ranks,
        the gradients are the global masked mean's."""
        B = obs.shape[0] * self.world
        x0 = torch.randn(B, policy.flat_dim, device=obs.device, generator=generator)[self.rank::self.world]
        t = torch.rand(B, device=obs.device, generator=generator)[self.rank::self.world]
        loss = self.fn["cfm"](policy, obs, actions, valid, x0, t, self.bf16_train)
        if valid is None:
            return loss
        mine = valid.detach().float().sum() * policy.act_dim  # the masked mean's denominator on this rank
        total = mine.clone()
        dist.all_reduce(total, group=self.group)
        return loss * (mine.clamp_min(1.0) * self.world / total.clamp_min(1.0))


class DataParallel:
    """Wraps an algorithm for data-parallel updates on this process group. Rank 0's weights are broadcast first
    (ranks built from the same seed already agree; this makes it true by construction)."""

    def __init__(self, algo: Algorithm, group=None):
        self.algo, self.group = algo, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        for m in algo.modules().values():
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t.data, src=0, group=group)
        algo.fast = ShardedUpdatePath(algo.fast, self.rank, self.world, group)
        params = [p for opt in algo.optimizers().values() for g in opt.param_groups for p in g["params"]]
        self._hooks = [p.register_post_accumulate_grad_hook(self._average) for p in params]

    def _average(self, p: torch.Tensor) -> None:
        dist.all_reduce(p.grad, group=self.group)
        p.grad.div_(self.world)

    def update(self, buffer) -> dict[str, float]:
        """One update of the wrapped algorithm on this rank's shard; the metrics are averaged over the ranks."""
        stats = self.algo.update(ShardBuffer(buffer, self.rank, self.world))
        vals = torch.tensor(list(stats.values()), dtype=torch.float64)
        dist.all_reduce(vals, group=self.group)
        return dict(zip(stats, (vals / self.world).tolist()))

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def main(argv: list[str] | None = None) -> None:
    """Learner benchmark under torchrun: `torchrun --nproc-per-node K -m flowft.dist.ddp --size paper --updates 20`
    times the data-parallel OGPO update on a synthetic buffer; rank 0 prints ms per update."""
    import argparse
    import time

    from flowft.presets import train_preset
    from flowft.registry import get_algorithm, get_task
    from flowft.train.fastpath import synthetic_buffer

    ap = argparse.ArgumentParser(prog="python -m flowft.dist.ddp")
    ap.add_argument("--algo", default="ogpo-plus-ca")
    ap.add_argument("--task", default="toy")
    ap.add_argument("--size", default="tiny", choices=["tiny", "mid", "paper"])
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rank, world = init_from_env()
    if world == 1:
        raise SystemExit("python -m flowft.dist.ddp: launch it with torchrun --nproc-per-node K (K >= 2)")
    cfg, task = train_preset(args.algo, args.task, args.size), get_task(args.task)
    dev = torch.device(f"cuda:{torch.cuda.current_device()}") if dist.get_backend() == "nccl" else torch.device("cpu")
    obs_dim, act_dim = 6, 2  # the shapes of the benchmark batch only (toy-sized observations and actions)
    algo = get_algorithm(args.algo).cls(cfg.algo, obs_dim, act_dim, task.chunk_len, dev, args.seed)
    learner, buf = DataParallel(algo), synthetic_buffer(obs_dim, act_dim, task.chunk_len, seed=args.seed)
    learner.update(buf)  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.updates):
        learner.update(buf)
    if is_main():
        ms = (time.perf_counter() - t0) / args.updates * 1e3
        print(f"{args.algo} --size {args.size}: {ms:.1f} ms per update on {world} ranks ({dist.get_backend()})")
    leave_group()


if __name__ == "__main__":
    main()
