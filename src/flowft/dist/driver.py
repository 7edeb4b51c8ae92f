"""Distributed acting on Ray: `--run.env-workers N` env-worker actors feed one learner (this process).

The learner owns the replay buffer (dist/buffers.py, one ring per worker) and every update; each worker steps
--run.num-envs envs with an acting copy of the algorithm and sends `--run.worker-steps` vector steps per message.
The loop takes whichever worker's message arrives first, stores it, sends that worker back to collecting (so it acts
while the learner updates), then runs the updates the received env steps pay for (UTD counts env steps received,
not steps taken on workers). Every `--run.weight-sync-every` updates the weights go into the object store once and
every worker loads them before its next message; each message carries the weight version that acted, and the lag
(updates since that version) is logged as dist/policy_lag_*. Evaluation runs on its own worker in the background; a
worker that dies is restarted by Ray and its in-flight message is counted as lost (dist/worker_restarts,
dist/lost_env_steps). Checkpoints hold the buffer and learner state exactly; workers start fresh episodes on resume.
The setup, resume checks, run-dir handling, signals and logging are the single-process Trainer's (train/loop.py).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from tqdm import tqdm

from flowft.algos.base import DivergenceError
from flowft.critics.diagnostics import critic_diagnostic
from flowft.dist.buffers import WorkerBuffers
from flowft.dist.worker import EnvWorker, WorkerRestarted, get_weights, weight_bytes
from flowft.envs.make import make_vec_env
from flowft.errors import ConfigError, FlowftError
from flowft.registry import get_algorithm
from flowft.train.checkpointing import load_checkpoint, save_checkpoint
from flowft.train.collector import ChunkCollector
from flowft.train.loop import EPISODE_WINDOW, Trainer
from flowft.utils.logging import summary_line
from flowft.utils.seeding import seed_everything

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError:  # the [dist] extra is missing: the Trainer says so in one line
    ray = None

MAX_RESTARTS = 100
"""Restarts of one worker after which the run stops (a worker that cannot live is a bug, not bad luck)."""
RETRY_S = 0.5
DRAIN_S = 60.0
"""At the budget, how long the learner waits for the messages still in flight (to hear of a worker death)."""
"""Pause before asking a restarting worker again (Ray answers ActorUnavailableError until it is back)."""


def _crossed(before: int, after: int, every: int) -> bool:
    return after // every > before // every


class DistTrainer(Trainer):
    """`Trainer` with the env stepping moved to Ray actors. Built by `flowft train/resume` when
    --run.env-workers > 0 (cli.py)."""

    # ------------------------------------------------------------------------------------------ setup
    def _setup(self, resume: bool, repair: bool, explicit: bool) -> None:
        if ray is None:
            raise ConfigError("--run.env-workers needs Ray: pip install 'flowft[dist]' (or pip install ray)")
        self.workers, self.evaluator, self._pending, self._eval = [], None, {}, None
        self.restarts, self.lost_steps, self.syncs, self._since_sync = [], 0, 0, 0
        self._down: set[int] = set()  # workers whose death is counted and whose restart is awaited
        self._turn = 0  # --run.worker-order round-robin: the worker whose message the learner takes next
        self.lag_window: list[int] = []
        self._own_ray = False
        super()._setup(resume, repair, explicit)
        if not self.finished:
            self._start_workers()

    def _build(self) -> bool:
        """The learner side only: networks and the per-worker buffer rings. One local env gives the dims (the
        Trainer's check against the task metadata); every training and evaluation env lives on a worker."""
        r, cfg = self.cfg.run, self.cfg
        spec = get_algorithm(cfg.algo_name)
        if r.video_every:
            raise ConfigError("--run.video-every: not recorded with --run.env-workers (evaluation runs on a Ray "
                              "worker); record videos afterwards with `flowft eval RUN --video`")
        if spec.cls.on_policy:
            raise ConfigError(f"--run.env-workers: {cfg.algo_name} is on-policy (it needs rollouts of the current "
                              "policy); distributed acting is for off-policy algorithms, run it without the flag")
        if r.buffer_capacity // r.env_workers < r.num_envs * self.H:
            raise ConfigError(f"--run.buffer-capacity {r.buffer_capacity} must be >= env_workers * num_envs * "
                              f"chunk_len = {r.env_workers * r.num_envs * self.H} (one ring per env worker)")
        seed_everything(r.seed)
        self.venv = make_vec_env(self.task, 1, vectorization="sync")
        self.obs_dim = int(np.prod(self.venv.single_observation_space.shape))
        self.act_dim = int(np.prod(self.venv.single_action_space.shape))
        dims = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "chunk_len": self.H}
        changed, self.dims = dims != self.dims, dims
        self.algo = spec.cls(cfg.algo, self.obs_dim, self.act_dim, self.H, self.device, r.seed)
        self.algo.enable_fast_path(r.compile, r.precision)
        self.on_policy, self.rollout = False, None
        self.buffer = WorkerBuffers(r.env_workers, r.num_envs, r.buffer_capacity, self.obs_dim, self.act_dim,
                                    self.H, seed=r.seed)
        self.collector = ChunkCollector(self.venv, self.H, self.device)  # the Trainer's start-up resets it; unused
        self.restarts = [0] * r.env_workers
        return changed

    def _start_workers(self) -> None:
        r = self.cfg.run
        if not ray.is_initialized():
            ray.init(address=r.ray_address, include_dashboard=False, configure_logging=False)
            self._own_ray = True
        actor = ray.remote(max_restarts=-1, max_task_retries=0)(EnvWorker)
        vec = None if r.vectorization == "auto" else r.vectorization
        args = (self.task, type(self.algo), self.cfg.algo, self.dims)
        self.workers = [actor.remote(*args, r.num_envs, r.seed, i, vec, r.threads or 1)
                        for i in range(r.env_workers)]
        self.evaluator = actor.remote(*args, r.eval_envs, r.seed, -1, vec, r.threads or 1)
        self._broadcast()
        ray.get([w.start.remote(self._stream(i)) for i, w in enumerate(self.workers)])
        print(f"distributed acting: {r.env_workers} env workers x {r.num_envs} envs on Ray "
              f"({ray.cluster_resources().get('CPU', 0):.0f} CPUs), weights {self.sync_bytes / 1e6:.2f} MB per sync",
              file=sys.stderr)

    def _stream(self, i: int) -> int:
        """Worker i's episode stream: new after every restart of it and every resume of the run."""
        return self.resets * 10_000 + self.restarts[i]

    # ------------------------------------------------------------------------------------- weights
    def _broadcast(self) -> None:
        """The learner's weights into the object store once; every worker loads them before its next message."""
        weights = get_weights(self.algo)
        self.sync_bytes = weight_bytes(weights)
        self._weights_ref, self.version = ray.put(weights), self.algo.grad_steps
        for w in self.workers:
            w.set_weights.remote(self.version, self._weights_ref)
        self.syncs, self._since_sync = self.syncs + 1, 0

    # ----------------------------------------------------------------------------------- messages
    def _launch(self, i: int) -> None:
        self._pending[i] = self.workers[i].collect.remote(self.cfg.run.worker_steps)

    def _receive(self) -> tuple[int, dict | None]:
        """The next message, as (worker, message); (worker, None) when that worker died. `arrival`: the first one
        ready. `round-robin`: worker `_turn`'s, then the next worker's turn; each actor runs the driver's calls in
        the order they were sent, so every message then acts with the same weights on every run of the seed."""
        if self.cfg.run.worker_order == "round-robin":
            i, self._turn = self._turn, (self._turn + 1) % len(self.workers)
            ready = self._pending[i]
            ray.wait([ready], num_returns=1)
        else:
            ref_of = {ref: i for i, ref in self._pending.items()}
            (ready,), _ = ray.wait(list(ref_of), num_returns=1)
            i = ref_of[ready]
        del self._pending[i]
        try:
            msg = ray.get(ready)
            self._down.discard(i)  # back (or never gone): a later failure is a new death
            return i, msg
        except (RayActorError, WorkerRestarted) as err:  # died with a message in flight / between two messages
            self._lost(i, err, in_flight=isinstance(err, RayActorError))
            return i, None

    def _lost(self, i: int, err: Exception, in_flight: bool) -> None:
        """Worker i died: Ray restarts its actor; count the loss (the message in flight, if any), close its ring's
        open episodes, and send the new actor a fresh episode stream and the current weights before its first
        message."""
        if i in self._down:  # still restarting (ActorUnavailableError): the same death, retried after a pause
            time.sleep(RETRY_S)
        else:
            self._count_death(i, err, in_flight)
        w = self.workers[i]
        w.start.remote(self._stream(i))
        w.set_weights.remote(self.version, self._weights_ref)
        self._launch(i)

    def _count_death(self, i: int, err: Exception, in_flight: bool) -> None:
        r = self.cfg.run
        self._down.add(i)
        self.restarts[i] += 1
        self.lost_steps += r.worker_steps * r.num_envs if in_flight else 0
        if self.restarts[i] > MAX_RESTARTS:
            raise FlowftError(f"env worker {i} died {self.restarts[i]} times; last error: {type(err).__name__}")
        self.buffer.cut_episodes(i)
        print(f"env worker {i} died at env step {self.env_steps} ({type(err).__name__}); Ray restarts it "
              f"(restart {self.restarts[i]}, {self.lost_steps} env steps lost so far)", file=sys.stderr)

    def _ingest(self, i: int, msg: dict) -> int:
        """Store a message; returns its env steps."""
        self.buffer.add_chunk(i, msg)
        self.lag_window.append(self.algo.grad_steps - msg["version"])
        self.recent = (self.recent + msg["finished"])[-EPISODE_WINDOW:]
        n = int(msg["rewards"].size)
        self.env_steps += n
        return n

    def _train_on(self, received: int) -> None:
        """The updates `received` env steps pay for (UTD per received step), then a weight broadcast when due."""
        r = self.cfg.run
        if self.env_steps < r.start_training or not self.buffer.can_sample():
            return
        self.update_credit += received * r.utd
        while self.update_credit >= 1.0:
            for k, v in self.algo.update(self.buffer).items():
                self.train_window.setdefault(k, []).append(float(v))
            self.update_credit -= 1.0
            self._since_sync += 1
            if self._since_sync >= r.weight_sync_every:
                self._broadcast()

    # ---------------------------------------------------------------------------------------- evaluation
    def _eval_args(self) -> tuple:
        r = self.cfg.run
        return ray.put(get_weights(self.algo)), r.eval_samplers, r.eval_episodes, r.seed, self.evals

    def evaluate_now(self) -> dict[str, float]:
        """A blocking evaluation on the eval worker (the first and the final one)."""
        out = ray.get(self.evaluator.evaluate.remote(*self._eval_args()))
        self.evals += 1
        return out

    def _launch_eval(self) -> None:
        """A background evaluation of the current weights; its row is logged when it returns (_poll_eval)."""
        if self._eval is None:
            self._eval = (self.evaluator.evaluate.remote(*self._eval_args()), self.env_steps)
            self.evals += 1

    def _poll_eval(self, block: bool = False) -> dict[str, float]:
        """The background evaluation's row once it is back ({} while it runs). It is logged at the env step it
        arrives, with the env step of the weights it evaluated as eval/weights_env_steps."""
        if self._eval is None or not (block or ray.wait([self._eval[0]], timeout=0)[0]):
            return {}
        (ref, at), self._eval = self._eval, None
        try:
            row = {**ray.get(ref), "eval/weights_env_steps": float(at)}
        except RayActorError as err:
            print(f"the eval worker died during the evaluation at {at} env steps ({type(err).__name__}); Ray "
                  "restarts it, the next evaluation runs there", file=sys.stderr)
            return {}
        self.logger.log(row, self.env_steps, self.algo.grad_steps)
        print(summary_line(row, self.env_steps), file=sys.stderr)
        return row

    # ------------------------------------------------------------------------------------------- loop
    def _run(self, stop_at: int | None) -> dict[str, float]:
        r = self.cfg.run
        last_eval: dict[str, float] = {}
        if self.env_steps == 0 and self.evals == 0:
            last_eval = self.evaluate_now()
            self.logger.log(last_eval, 0, self.algo.grad_steps)
            print(summary_line(last_eval, 0), file=sys.stderr)
        bar = tqdm(total=r.env_steps, initial=self.env_steps, unit="step", dynamic_ncols=True,
                   disable=not (r.log.progress and sys.stderr.isatty()))
        self._t0, self._steps0, self._t_update, saved_at = time.perf_counter(), self.env_steps, 0.0, -1
        try:
            self._maybe_stop(bar, saved_at)
            for i in range(r.env_workers):
                self._launch(i)
            while self.env_steps < r.env_steps:
                before = self.env_steps
                if not self._step(bar):
                    continue
                last_eval = self._poll_eval() or last_eval
                if self.env_steps < r.env_steps and _crossed(before, self.env_steps, r.ckpt_every):
                    saved_at = self.env_steps
                    if self._save_in_loop(bar, stop_at):
                        return last_eval
                if self.env_steps < r.env_steps:
                    self._maybe_stop(bar, saved_at)
            bar.close()
            self._drain()
            self._log_train_row()
            last_eval = self._poll_eval(block=True) or last_eval
            return self._final(last_eval)
        except DivergenceError as err:
            self._diverged(err, bar)
            raise

    def _step(self, bar) -> bool:
        """One message: store it, relaunch its worker, train, log. False when the message was lost."""
        r = self.cfg.run
        i, msg = self._receive()
        if msg is None:
            return False
        before, n = self.env_steps, self._ingest(i, msg)
        if self.env_steps < r.env_steps:
            self._launch(i)  # the worker acts while the learner updates
        tu = time.perf_counter()
        self._train_on(n)
        self._t_update += time.perf_counter() - tu
        bar.update(n)
        if _crossed(before, self.env_steps, r.eval_every) and self.env_steps < r.env_steps:
            self._launch_eval()
        crossed = _crossed(before, self.env_steps, r.log.log_every) or _crossed(before, self.env_steps, r.eval_every)
        if crossed and self.env_steps < r.env_steps:  # the row at the budget is logged after _drain
            self._log_train_row()
        return True

    def _drain(self) -> None:
        """At the budget: settle every message still in flight, so that a worker death the loop has not yet heard
        of is counted (dist/worker_restarts) instead of vanishing with the run. Messages collected past the budget
        are dropped. A worker still restarting is not waited for (its death is counted); one that does not answer
        within DRAIN_S is left to close()."""
        pending = {ref: i for i, ref in self._pending.items() if i not in self._down}
        self._pending = {}
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=DRAIN_S) if pending else ([], [])
        for ref in ready:
            try:
                ray.get(ref)
            except (RayActorError, WorkerRestarted) as err:
                self._count_death(pending[ref], err, in_flight=isinstance(err, RayActorError))
        if late:
            print(f"env workers {sorted(pending[ref] for ref in late)} sent nothing for {DRAIN_S:.0f} s after the "
                  "budget was reached; their last messages are dropped", file=sys.stderr)

    def _final(self, last_eval: dict[str, float]) -> dict[str, float]:
        """At the budget: the final evaluation (blocking, on the eval worker), the final checkpoint, the plot."""
        if last_eval.get("eval/weights_env_steps") != float(self.env_steps):
            last_eval = self.evaluate_now()
            self.logger.log(last_eval, self.env_steps, self.algo.grad_steps)
            print(summary_line(last_eval, self.env_steps), file=sys.stderr)
        self.save()
        if self.cfg.run.plot:
            self._plot()
        self.logger.close()
        return last_eval

    def _log_train_row(self) -> None:
        row = {f"train/{k}": float(np.mean(v)) for k, v in self.train_window.items()}
        row.update(self._episode_stats())
        row.update(self._critic_diag())
        row.update(self.dist_stats())
        dt = time.perf_counter() - self._t0
        row.update({"time/sps": (self.env_steps - self._steps0) / dt, "time/update_frac": self._t_update / dt})
        self.logger.log(row, self.env_steps, self.algo.grad_steps)
        self.train_window, self.lag_window = {}, []

    def dist_stats(self) -> dict[str, float]:
        lag = self.lag_window or [0]
        return {"dist/policy_lag_mean": float(np.mean(lag)), "dist/policy_lag_max": float(np.max(lag)),
                "dist/worker_restarts": float(sum(self.restarts)), "dist/lost_env_steps": float(self.lost_steps),
                "dist/weight_syncs": float(self.syncs), "dist/sync_mb": self.sync_bytes / 1e6}

    def _critic_diag(self) -> dict[str, float]:
        n = self.cfg.run.critic_diag_episodes
        if not n:
            return {}
        ring = self.buffer.diagnostic_ring()
        return {f"train/critic_diag/{k}": v for k, v in critic_diagnostic(self.algo, ring, n).items()}

    # ------------------------------------------------------------------------------------ checkpoints
    def save(self):
        """Learner state only (no env state: workers start fresh episodes on resume). An evaluation still running
        is waited for first, so the checkpoint's metrics row count includes its row."""
        if self._eval is not None:
            self._poll_eval(block=True)
        r = self.cfg.run
        loop_state = {**self.loop_state(None),
                      "dist": {"restarts": self.restarts, "lost_steps": self.lost_steps, "syncs": self.syncs,
                               "lag_window": self.lag_window}}
        return save_checkpoint(self.run_dir / "checkpoints", self.env_steps, self.config_dict, self.dims, self.algo,
                               self.buffer if r.save_buffer else None, loop_state, {}, r.keep_checkpoints)

    def _resume(self, path) -> None:
        state, _ = load_checkpoint(path, self.config_dict, self.dims, self.algo, self.buffer)
        self.env_steps, self.update_credit = state["env_steps"], state["update_credit"]
        self.resets, self.evals = state["resets"] + 1, state["evals"]
        self.recent, self.train_window = state.get("recent", []), state.get("train_window", {})
        self.rms_start = state.get("weight_rms")
        dist = state.get("dist")
        if dist is None:
            raise ConfigError(f"checkpoint {path} is from a single-process run: resume it without --run.env-workers")
        if len(dist["restarts"]) != len(self.restarts):
            raise ConfigError(f"checkpoint {path} has {len(dist['restarts'])} env workers; resume with the run's "
                              "own --run.env-workers")
        self.restarts, self.lost_steps, self.syncs = dist["restarts"], dist["lost_steps"], dist["syncs"]
        self.lag_window = dist["lag_window"]
        for i in range(len(self.restarts)):  # the workers' open episodes are gone: fresh ones start on resume
            self.buffer.cut_episodes(i)
        print(f"resumed {self.run_dir} from {path.name} at {self.env_steps} env steps ({len(self.restarts)} env "
              "workers start fresh episodes)", file=sys.stderr)

    def close(self) -> None:
        if ray is not None and ray.is_initialized():
            for w in [*self.workers, *([self.evaluator] if self.evaluator is not None else [])]:
                ray.kill(w, no_restart=True)
            self.workers, self.evaluator = [], None
            if self._own_ray:
                ray.shutdown()
                self._own_ray = False
        super().close()
