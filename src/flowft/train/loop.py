"""The one training loop shared by all algorithms: act -> step -> store -> update -> log -> eval -> checkpoint.
Off-policy: transitions go to the replay buffer and updates follow the UTD ratio. On-policy (Algorithm.on_policy,
DPPO): decisions go to a RolloutStorage and the algorithm updates once per rollout of `rollout_steps` env steps per
env; checkpoints are written only at rollout boundaries (so the rollout itself never needs saving and resume is
exact). Algorithms never touch environments; this loop never touches gradients.

Resume changes no result (issue 19): a checkpoint holds everything the loop carries between env steps, the partial
train/* window and the metrics.csv row count included, so a resumed run logs and trains exactly as an uninterrupted
one. The checkpoint at the budget is written once, after the final evaluation's row; a run whose latest checkpoint is
at its budget is finished and a resume of it changes nothing. SIGINT/SIGTERM checkpoint at the next safe point
(between env steps) and exit 130/143 (train/runguard.py)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flowft.algos.base import Algorithm, DivergenceError, act_sampler
from flowft.config import TrainConfig
from flowft.critics.diagnostics import critic_diagnostic
from flowft.data.buffer import ReplayBuffer
from flowft.deploy import load_bc_actor
from flowft.envs.make import make_vec_env, release_vec_env, reset_vec_env
from flowft.errors import ConfigError
from flowft.registry import get_algorithm, get_task
from flowft.train.checkpointing import (kept_checkpoint_note, load_checkpoint, module_weights, save_checkpoint,
                                        weight_rms)
from flowft.train.clock import Clock
from flowft.train.collector import ChunkCollector, env_states, restore_env_states
from flowft.train.evaluate import bc_start_read, eval_stream, evaluate, record_videos
from flowft.train.onpolicy import RolloutStorage
from flowft.train.resuming import plan_resume, record_budget
from flowft.train.runguard import (LOCK_NAME, GracefulStop, RunInterrupted, RunLock, check_new_run_dir,
                                   children_ignore_stop_signals, claim_run_dir, default_run_dir, require_run_dir,
                                   require_simulator, resolve_device, task_dims)
from flowft.utils.config_io import to_dict, write_json
from flowft.utils.logging import Logger, console, summary_line
from flowft.utils.provenance import record as record_provenance
from flowft.utils.seeding import seed_everything
from flowft.utils.video import check_video_extra

EPISODE_WINDOW = 50  # train/episode_* are means over the last this-many finished training episodes


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, resume: bool = False,
                 repair_metrics: bool = False):
        """Cheap checks first (simulator extra, BC checkpoint dims and architecture, run dir lock, checkpoint
        compatibility, metrics history, budget), then the expensive start-up (env workers, networks, buffer). A
        resume of a finished run builds nothing (`finished` is True and run() changes nothing). A resume of a run
        dir without a checkpoint starts over from its config. `repair_metrics` continues past a damaged
        metrics.csv with its readable rows (the damaged file is copied aside)."""
        r = cfg.run
        if r.threads:
            torch.set_num_threads(r.threads)
        self.cfg, self.device, self.task = cfg, resolve_device(r.device), get_task(r.task)
        self.H = self.task.chunk_len
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
        self.config_dict = {"algo_name": cfg.algo_name, **to_dict(cfg)}
        self.env_steps, self.update_credit, self.resets, self.evals = 0, 0.0, 0, 0
        self.recent: list[dict] = []  # the last EPISODE_WINDOW finished training episodes (train/episode_*)
        self.train_window: dict[str, list[float]] = {}  # update stats since the last metrics row (checkpointed)
        self.finished, self.final_eval = False, {}
        self._lock = self.logger = self.venv = self.eval_venv = self._stop = None
        self._extras: dict | None = None
        self.rms_start: dict[str, float] | None = None  # each module's weight RMS at the run's start (growth guard)
        try:
            self._setup(resume, repair_metrics, explicit=run_dir is not None or r.run_name is not None)
        except BaseException:
            self.close()
            raise
        if self.rms_start is None and not self.finished:
            self.rms_start = weight_rms(module_weights(self.algo))

    def _setup(self, resume: bool, repair: bool, explicit: bool) -> None:
        r = self.cfg.run
        require_simulator(r.task)
        if r.video_every:
            check_video_extra("--run.video-every")
        self.dims = task_dims(self.task)
        ckpt = history = None
        if resume:
            require_run_dir(self.run_dir)
            self._lock = RunLock.acquire(self.run_dir / LOCK_NAME, f"run dir {self.run_dir}")
            plan = plan_resume(self.run_dir, self.config_dict, self.dims, repair)
            if plan.finished:
                self.finished, self.env_steps, self.final_eval = True, plan.done, plan.final_eval
                return
            ckpt, history = plan.checkpoint, plan.history
        if not resume and explicit:
            check_new_run_dir(self.run_dir)
        bc = None if ckpt is not None else self._check_bc()
        if self._build():  # the task metadata's dims were not the envs': check the BC checkpoint again
            bc = None if ckpt is not None else self._check_bc()
        if ckpt is not None:
            self._resume(ckpt)
        else:
            self.algo.init_from_bc(bc)
            if not resume:
                self.run_dir = claim_run_dir(self.run_dir, explicit)
                self._lock = RunLock.acquire(self.run_dir / LOCK_NAME, f"run dir {self.run_dir}")
                write_json(self.run_dir / "config.json", self.config_dict)
            self.collector.start(reset_vec_env(self.venv, r.seed, stream=0))
        if resume:
            record_budget(self.run_dir, r.env_steps)  # --env-steps: only once the checkpoint has loaded
        record_provenance(self.run_dir)  # one line per sitting: which code made (or resumed) this run
        self.logger = Logger(self.run_dir, r.log, self.config_dict, history=history)

    def _check_bc(self) -> dict[str, torch.Tensor]:
        if self.cfg.run.bc_checkpoint is None:
            raise ConfigError("--run.bc-checkpoint is required: every method starts from a BC checkpoint "
                              "(make one with `flowft pretrain`)")
        return load_bc_actor(self.cfg.run.bc_checkpoint, self.dims, self.cfg.algo.policy, self.cfg.run.task)

    def _build(self) -> bool:
        """The expensive part: env workers, networks, buffer. Returns whether the envs' dims differ from the
        task metadata's (then self.dims is corrected)."""
        r, cfg = self.cfg.run, self.cfg
        seed_everything(r.seed)  # the checks above built modules: every run starts its RNG streams here
        vec = None if r.vectorization == "auto" else r.vectorization
        with children_ignore_stop_signals():
            self.venv = make_vec_env(self.task, r.num_envs, vectorization=vec)
            self.eval_venv = make_vec_env(self.task, r.eval_envs, vectorization=vec)
        self.obs_dim = int(np.prod(self.venv.single_observation_space.shape))
        self.act_dim = int(np.prod(self.venv.single_action_space.shape))
        dims = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "chunk_len": self.H}
        changed, self.dims = dims != self.dims, dims
        self.algo: Algorithm = get_algorithm(cfg.algo_name).cls(cfg.algo, self.obs_dim, self.act_dim, self.H,
                                                                self.device, r.seed)
        self.algo.enable_fast_path(r.compile, r.precision)  # before any weights load: it restores what it touches
        self.on_policy = self.algo.on_policy
        self.buffer = None if self.on_policy else ReplayBuffer(r.num_envs, r.buffer_capacity, self.obs_dim,
                                                               self.act_dim, self.H, seed=r.seed)
        self.rollout = RolloutStorage(r.num_envs) if self.on_policy else None
        self.collector = ChunkCollector(self.venv, self.H, self.device)
        return changed

    # ----------------------------------------------------------------------------------------- resume
    def _resume(self, path: Path) -> None:
        state, arrays = load_checkpoint(path, self.config_dict, self.dims, self.algo, self.buffer)
        self.env_steps, self.update_credit = state["env_steps"], state["update_credit"]
        self.resets, self.evals = state["resets"] + 1, state["evals"]
        # the windows continue across the resume: train/episode_* (last EPISODE_WINDOW finished episodes) and the
        # train/* values since the last row; checkpoints written before they were saved restart them empty
        self.recent = state.get("recent", [])
        self.train_window = state.get("train_window", {})
        self.rms_start = state.get("weight_rms")  # checkpoints older than the growth guard: measured from here
        if state["env_states"] is not None and env_states(self.venv) is not None:
            reset_vec_env(self.venv, self.cfg.run.seed, stream=0)
            restore_env_states(self.venv, state["env_states"])
            self.collector.load_state_arrays(arrays)
        else:  # simulator state cannot be restored: fresh episodes from a new seed stream
            self.collector.start(reset_vec_env(self.venv, self.cfg.run.seed, stream=self.resets))
        print(f"resumed {self.run_dir} from {path.name} at {self.env_steps} env steps", file=sys.stderr)

    def loop_state(self, env_state) -> dict:
        """What a checkpoint's state.json holds besides the algorithm's state (`env_state`: the envs' simulator
        states, or None where they cannot be restored)."""
        return {"env_steps": self.env_steps, "update_credit": self.update_credit, "resets": self.resets,
                "evals": self.evals, "env_states": env_state,
                "recent": self.recent,  # JSON-safe: the collector's episode dicts hold int/float/bool
                "train_window": self.train_window, "metrics": self.logger.state(), "weight_rms": self.rms_start}

    def save(self) -> Path:
        return save_checkpoint(self.run_dir / "checkpoints", self.env_steps, self.config_dict, self.dims, self.algo,
                               self.buffer if self.cfg.run.save_buffer and not self.on_policy else None,
                               self.loop_state(env_states(self.venv)), self.collector.state_arrays(),
                               self.cfg.run.keep_checkpoints)

    # ------------------------------------------------------------------------------------------- eval
    def evaluate_now(self, known: dict[str, dict] | None = None) -> dict[str, float]:
        """One evaluation per sampler; `known`: results already read of exactly these episodes, by sampler."""
        r, out = self.cfg.run, {}
        for mode in r.eval_samplers:
            reset_seed, stream, gen_seed = eval_stream(r.seed, self.evals)
            gen = torch.Generator(device=self.device).manual_seed(gen_seed)
            res = (known or {}).get(mode) or evaluate(
                lambda o, m=mode, g=gen: act_sampler(self.algo, o, m, g), self.eval_venv, self.H, r.eval_episodes,
                seed=reset_seed, stream=stream, device=self.device,
                progress=f"eval {mode}" if r.log.progress else None)  # the training bar waits meanwhile
            out.update({f"eval/{mode}/{k}": v for k, v in res.items()})
        self.evals += 1
        return out

    # ------------------------------------------------------------------------------------------- loop
    def _act_rollout(self, obs: torch.Tensor) -> torch.Tensor:
        chunk, self._extras = self.algo.act_rollout(obs)
        return chunk

    def _store(self, res) -> None:
        """One env step of every env into the rollout or the replay buffer; keeps the recent finished episodes."""
        if self.on_policy:
            self.rollout.add(res, self._extras)
        else:
            self.buffer.add_batch(res.obs, res.actions, res.rewards, res.terminated, res.truncated,
                                  res.next_obs, res.success)
        self.recent = (self.recent + res.finished)[-EPISODE_WINDOW:]

    def _step_and_train(self) -> float:
        """One env step of every env, then the updates it pays for; returns the seconds spent updating.
        With run.overlap_updates (off-policy only) the updates run while an AsyncVectorEnv's workers step, so they
        sample a buffer without this step's N transitions (one env step stale); the order is the same for sync
        envs, so a run does not depend on the vectorization."""
        r = self.cfg.run
        overlap = r.overlap_updates and not self.on_policy
        self._extras = None
        self.collector.step_async(self._act_rollout if self.on_policy else (lambda o: self.algo.act(o, "explore")))
        self.env_steps += r.num_envs
        if not overlap:
            self._store(self.collector.step_wait())
        tu = time.perf_counter()
        self._train()
        t_update = time.perf_counter() - tu
        if overlap:
            self._store(self.collector.step_wait())
        return t_update

    def _train(self) -> None:
        r, window = self.cfg.run, self.train_window
        if self.on_policy:  # update at the rollout boundary (or at the end of the budget), then replan every env
            if self.rollout.steps >= self.algo.rollout_steps or self.env_steps >= r.env_steps:
                for k, v in self.algo.update_rollout(self.rollout).items():
                    window.setdefault(k, []).append(float(v))  # floats: a JSON round trip keeps them exactly
                self.rollout.clear()
                self.collector.flush()
        elif self.env_steps >= r.start_training:
            self.update_credit += r.num_envs * r.utd
            while self.update_credit >= 1.0:
                for k, v in self.algo.update(self.buffer).items():
                    window.setdefault(k, []).append(float(v))
                self.update_credit -= 1.0

    def run(self, stop_at: int | None = None) -> dict[str, float]:
        """Train to the budget; returns the final evaluation. `stop_at` ends the loop early right after the
        checkpoint at that env step, as if the process had been killed there (used by the resume tests). A
        finished run returns its recorded final evaluation and changes nothing. Env worker processes are always
        closed and the run dir unlocked."""
        try:
            if self.finished:
                print(f"{self.run_dir} is finished ({self.env_steps} env steps, budget {self.cfg.run.env_steps}, "
                      f"final evaluation recorded): nothing to do. Train it further with `flowft resume "
                      f"{self.run_dir} --env-steps N`", file=sys.stderr)
                return dict(self.final_eval)
            with GracefulStop(self.run_dir) as self._stop:
                return self._run(stop_at)
        finally:
            self.close()

    def close(self) -> None:
        for venv in (self.venv, self.eval_venv):
            if venv is not None:
                release_vec_env(venv)
        if self.logger is not None:
            self.logger.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _crossed(self, every: int) -> bool:
        return self.env_steps % every < self.cfg.run.num_envs

    def _run(self, stop_at: int | None) -> dict[str, float]:
        r = self.cfg.run
        last_eval: dict[str, float] = {}
        last_eval_step = -1
        if self.env_steps == 0 and self.evals == 0:
            start = bc_start_read(r) if r.start_eval_from_bc and "ode" in r.eval_samplers else None
            if start is not None:
                console(f"step 0: ODE evaluation = the BC gate's start read of these {r.eval_episodes} episodes")
            last_eval, last_eval_step = self.evaluate_now({"ode": start} if start else None), 0
            self.logger.log(last_eval, 0, self.algo.grad_steps)
            console(summary_line(last_eval, 0))
        bar = tqdm(total=r.env_steps, initial=self.env_steps, unit="step", dynamic_ncols=True,
                   disable=not (r.log.progress and sys.stderr.isatty()))
        clock, ckpt_due, saved_at = Clock(self.env_steps), False, -1
        try:
            self._maybe_stop(bar, saved_at)  # a signal during the first evaluation
            while self.env_steps < r.env_steps:
                clock.t_update += self._step_and_train()
                bar.update(r.num_envs)
                if self._crossed(r.log.log_every) or self._crossed(r.eval_every):
                    ev = self._log_row(clock, bar)
                    if ev:
                        last_eval, last_eval_step = ev, self.env_steps
                ckpt_due = ckpt_due or self._crossed(r.ckpt_every)
                # the checkpoint at the budget is written once, after the final evaluation (below); on-policy:
                # at rollout boundaries only
                if ckpt_due and self.env_steps < r.env_steps and not (self.on_policy and self.rollout.steps):
                    ckpt_due, saved_at = False, self.env_steps
                    if self._save_in_loop(bar, stop_at):
                        return last_eval
                if self.env_steps < r.env_steps:
                    self._maybe_stop(bar, saved_at)
            bar.close()
            return self._finish(last_eval, last_eval_step)  # inside the guard: the final save can diverge too
        except DivergenceError as err:
            self._diverged(err, bar)
            raise

    def _save_in_loop(self, bar, stop_at: int | None) -> bool:
        """An in-loop checkpoint; True when `stop_at` is reached (the loop then returns as if killed right here)."""
        self.save()
        if stop_at is not None and self.env_steps >= stop_at:
            bar.close()
            self.logger.close()
            return True
        return False

    def _diverged(self, err: DivergenceError, bar) -> None:
        """Record a divergence: DIVERGED.txt names the checkpoint kept, re-checked (intact manifest, finite)."""
        bar.close()
        kept = kept_checkpoint_note(self.run_dir, set(module_weights(self.algo)))
        (self.run_dir / "DIVERGED.txt").write_text(f"{err}\nat env step {self.env_steps}\n{kept}\n")
        print(f"training diverged: {err}. {kept}", file=sys.stderr)
        self.logger.close()

    def _finish(self, last_eval: dict[str, float], last_eval_step: int) -> dict[str, float]:
        """At the budget: the final evaluation (unless one ran at this step), the final checkpoint, the plot."""
        if last_eval_step != self.env_steps:
            last_eval = self.evaluate_now()
            self.logger.log(last_eval, self.env_steps, self.algo.grad_steps)
        self.save()
        if self.cfg.run.plot:
            self._plot()
        self.logger.close()
        return last_eval

    def _log_row(self, clock: Clock, bar) -> dict[str, float]:
        """One metrics row: the train/* window, training episodes, critic diagnostic, throughput, and an
        evaluation when one is due (returned; {} when none)."""
        r = self.cfg.run
        row = {f"train/{k}": float(np.mean(v)) for k, v in self.train_window.items()}
        row.update(self._episode_stats())
        row.update(self._critic_diag())
        row.update(clock.row(self.env_steps))
        ev: dict[str, float] = {}
        if self._crossed(r.eval_every) or self.env_steps >= r.env_steps:
            te = time.perf_counter()
            ev = self.evaluate_now()
            clock.t_eval += time.perf_counter() - te
            row["time/eval_s"] = clock.t_eval  # in-loop evaluation seconds so far, this eval included
            row.update(ev)
            console(summary_line(row, self.env_steps))  # above the bar
            if r.plot:
                self._plot()
            if r.video_every and (self._crossed(r.video_every) or self.env_steps >= r.env_steps):
                self._video()
        self.logger.log(row, self.env_steps, self.algo.grad_steps)
        clock.mark(self.env_steps)
        bar.set_postfix(succ=f"{row.get('train/episode_success', float('nan')):.2f}", sps=f"{row['time/sps']:.0f}")
        self.train_window = {}
        return ev

    def _maybe_stop(self, bar, saved_at: int) -> None:
        """After a SIGINT/SIGTERM: checkpoint here (a safe point: between env steps, no update running), say how
        to continue, and exit 130/143. On-policy runs mid-rollout keep their last checkpoint (rollouts are not
        saved)."""
        if self._stop is None or self._stop.signum is None:
            return
        bar.close()
        if self.on_policy and self.rollout.steps:
            what = "the current rollout is not saved (on-policy checkpoints are written at rollout boundaries)"
        else:
            if saved_at != self.env_steps:
                self.save()
            what = f"checkpoint {self.env_steps:010d} written"
        self.logger.close()
        print(f"stopped by {signal.Signals(self._stop.signum).name} at {self.env_steps} env steps; {what}. "
              f"Continue with: flowft resume {self.run_dir}", file=sys.stderr)
        raise RunInterrupted(self._stop.signum)

    def _video(self) -> None:
        """--run.video-every: one episode of the first eval sampler, next to the checkpoints (rotation-safe)."""
        r, mode = self.cfg.run, self.cfg.run.eval_samplers[0]
        gen = torch.Generator(device=self.device).manual_seed(r.seed)
        record_videos({mode: lambda o: act_sampler(self.algo, o, mode, gen)}, [mode], self.task,
                      self.run_dir / "videos" / f"{self.env_steps:010d}", r.seed + 10_000, self.device)

    def _episode_stats(self) -> dict[str, float]:
        keys = ("success", "return", "length") if self.recent else ()  # over the last EPISODE_WINDOW episodes
        return {f"train/episode_{k}": float(np.mean([e[k] for e in self.recent])) for k in keys}

    def _critic_diag(self) -> dict[str, float]:
        """train/critic_diag/*: the critic's Q on the last finished episodes' executed chunks vs. their Monte-Carlo
        returns (critics/diagnostics.py). No RNG and no state change, so training and exact resume are unaffected."""
        n = self.cfg.run.critic_diag_episodes
        if not n or self.buffer is None:  # on-policy algorithms keep no replay buffer (and no Q(s, a_chunk))
            return {}
        return {f"train/critic_diag/{k}": v for k, v in critic_diagnostic(self.algo, self.buffer, n).items()}

    def _plot(self) -> None:
        from flowft.utils.plotting import plot_runs

        plot_runs([self.run_dir], self.run_dir / "plots" / "learning_curve.png")
