"""Training with a data-parallel learner: `torchrun --nproc-per-node W -m flowft train ALGO ...` (docs/scaling.md).

Every rank runs the single-process loop (train/loop.py) on its own copy of the envs, seeded identically, so every
rank collects the same transitions and holds the same replay buffer, which is what ddp.py's ShardBuffer assumes (each
rank draws the same global batch and keeps its rows). The update is ddp.DataParallel's: each rank imagines the chains
of its share of the states and the gradients are averaged, so every rank takes the same optimiser step and acts with
the same weights. Only rank 0 owns the run dir: it claims and locks it, logs, evaluates, plots and writes checkpoints;
the other ranks read its config and checkpoint on resume and write nothing. A stop signal seen by any rank stops
every rank at the same env step (the stop flag is all-reduced at every safe point), so no rank is left waiting in an
all-reduce. If a simulator is not bit-deterministic the ranks' buffers drift apart; the update is then still an
average of unbiased per-rank gradients, just not equal to the one-rank update.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from flowft.dist.ddp import DataParallel, init_from_env
from flowft.envs.make import reset_vec_env
from flowft.errors import ConfigError
from flowft.registry import get_algorithm
from flowft.train.loop import Trainer
from flowft.train.runguard import RunInterrupted, task_dims


class _NoLogger:
    """The logger of ranks > 0: they record nothing (rank 0's rows are the run's)."""

    def log(self, *args, **kwargs) -> None:
        pass

    def state(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class DDPTrainer(Trainer):
    """`Trainer` whose updates are data-parallel over the torch.distributed process group torchrun starts."""

    def __init__(self, cfg, run_dir: Path | None = None, resume: bool = False, repair_metrics: bool = False):
        if not (dist.is_available() and dist.is_initialized()):
            init_from_env()
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if get_algorithm(cfg.algo_name).cls.on_policy:
            raise ConfigError(f"torchrun with {self.world} ranks: {cfg.algo_name} is on-policy; the data-parallel "
                              "learner is for the off-policy update (run it as one process)")
        if cfg.run.env_workers:
            raise ConfigError("--run.env-workers with torchrun: Ray env workers feed one learner process; launch "
                              "either Ray env workers or torchrun ranks, not both")
        super().__init__(cfg, run_dir, resume, repair_metrics)
        self.learner = None if self.finished else DataParallel(self.algo)

    # ------------------------------------------------------------------------------------------ setup
    def _setup(self, resume: bool, repair: bool, explicit: bool) -> None:
        """Rank 0: the Trainer's setup (run dir, lock, resume plan). Then it tells the other ranks the run dir,
        the checkpoint it resumed from and whether the run is finished; they build the same envs, networks and
        buffer, and load the same checkpoint or BC weights."""
        self._resumed_from = None
        if self.rank == 0:
            try:
                super()._setup(resume, repair, explicit)
                shared = [str(self.run_dir), self._resumed_from, self.finished, self.env_steps, None]
            except BaseException as err:  # the other ranks must not wait for a setup that failed
                dist.broadcast_object_list([None] * 4 + [f"{type(err).__name__}: {err}"], src=0)
                raise
            dist.broadcast_object_list(shared, src=0)
            return
        shared = [None] * 5
        dist.broadcast_object_list(shared, src=0)
        run_dir, ckpt, self.finished, self.env_steps, failed = shared
        if failed is not None:
            raise SystemExit(f"rank {self.rank}: rank 0 failed to start ({failed})")
        self.run_dir, self.logger = Path(run_dir), _NoLogger()
        self.evals = max(self.evals, 1)  # the start-of-run evaluation is rank 0's (evals seed only rank 0's evals)
        if self.finished:
            return
        self.dims = task_dims(self.task)
        self._build()
        if ckpt is not None:
            self._resume(Path(ckpt))
        else:
            self.algo.init_from_bc(self._check_bc())
            self.collector.start(reset_vec_env(self.venv, self.cfg.run.seed, stream=0))

    def _resume(self, path: Path) -> None:
        self._resumed_from = str(path)
        super()._resume(path)

    def run(self, stop_at: int | None = None) -> dict[str, float]:
        if self.finished and self.rank:  # rank 0 says so
            self.close()
            return {}
        return super().run(stop_at)

    # ----------------------------------------------------------------------------------------- updates
    def _train(self) -> None:
        r = self.cfg.run
        if self.env_steps >= r.start_training:
            self.update_credit += r.num_envs * r.utd
            while self.update_credit >= 1.0:
                for k, v in self.learner.update(self.buffer).items():
                    self.train_window.setdefault(k, []).append(float(v))
                self.update_credit -= 1.0

    # ------------------------------------------------------------------------ rank 0 records, the rest act
    def save(self):
        return super().save() if self.rank == 0 else None

    def evaluate_now(self, known: dict[str, dict] | None = None) -> dict[str, float]:
        return super().evaluate_now(known) if self.rank == 0 else {}

    def _log_row(self, clock, bar) -> dict[str, float]:
        if self.rank == 0:
            return super()._log_row(clock, bar)
        self.train_window = {}
        return {}

    def _plot(self) -> None:
        if self.rank == 0:
            super()._plot()

    def _maybe_stop(self, bar, saved_at: int) -> None:
        """A signal any rank received stops every rank here (the same env step on every rank)."""
        mine = self._stop.signum if self._stop is not None and self._stop.signum is not None else 0
        flag = torch.tensor([mine], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if not flag.item():
            return
        if self.rank == 0:
            self._stop.signum = self._stop.signum or int(flag.item())
            super()._maybe_stop(bar, saved_at)
        bar.close()
        print(f"rank {self.rank}: stopped by {signal.Signals(int(flag.item())).name} with rank 0 at "
              f"{self.env_steps} env steps", file=sys.stderr)
        raise RunInterrupted(int(flag.item()))

    def close(self) -> None:
        if getattr(self, "learner", None) is not None:
            self.learner.close()
            self.learner = None
        super().close()
