"""The one training loop shared by all algorithms: act -> step -> store -> update -> log -> eval -> checkpoint.
Off-policy: transitions go to the replay buffer and updates follow the UTD ratio. On-policy (Algorithm.on_policy,
DPPO): decisions go to a RolloutStorage and the algorithm updates once per rollout of `rollout_steps` env steps per
env; checkpoints are written only at rollout boundaries (so the rollout itself never needs saving and resume is
exact). Algorithms never touch environments; this loop never touches gradients."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flowft.algos.base import Algorithm, DivergenceError
from flowft.config import TrainConfig
from flowft.critics.diagnostics import critic_diagnostic
from flowft.data.buffer import ReplayBuffer
from flowft.deploy import load_bc_actor
from flowft.envs.make import make_vec_env, reset_vec_env
from flowft.registry import get_algorithm, get_task
from flowft.train.checkpointing import load_checkpoint, save_checkpoint
from flowft.train.collector import ChunkCollector, env_states, restore_env_states
from flowft.train.evaluate import evaluate
from flowft.train.onpolicy import RolloutStorage
from flowft.utils.checkpoint import latest_checkpoint
from flowft.utils.config_io import to_dict, write_json
from flowft.utils.logging import Logger, summary_line
from flowft.utils.provenance import record as record_provenance
from flowft.utils.seeding import seed_everything

EPISODE_WINDOW = 50  # train/episode_* are means over the last this-many finished training episodes


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--run.device {name}: CUDA is not available on this machine")
    return dev


def default_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run.run_name or f"{cfg.algo_name}-{cfg.run.task}-s{cfg.run.seed}-{datetime.now():%Y%m%d-%H%M%S}"
    return Path(cfg.run.out_dir) / name


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, resume: bool = False):
        r = cfg.run
        if r.threads:
            torch.set_num_threads(r.threads)
        seed_everything(r.seed)
        self.cfg, self.device, self.task = cfg, resolve_device(r.device), get_task(r.task)
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
        vec = None if r.vectorization == "auto" else r.vectorization
        self.venv = make_vec_env(self.task, r.num_envs, vectorization=vec)
        self.eval_venv = make_vec_env(self.task, r.eval_envs, vectorization=vec)
        self.obs_dim = int(np.prod(self.venv.single_observation_space.shape))
        self.act_dim = int(np.prod(self.venv.single_action_space.shape))
        self.H = self.task.chunk_len
        self.dims = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "chunk_len": self.H}
        self.config_dict = {"algo_name": cfg.algo_name, **to_dict(cfg)}
        self.algo: Algorithm = get_algorithm(cfg.algo_name).cls(cfg.algo, self.obs_dim, self.act_dim, self.H,
                                                                self.device, r.seed)
        self.algo.enable_fast_path(r.compile, r.precision)  # before any weights load: it restores what it touches
        self.on_policy = self.algo.on_policy
        self.buffer = None if self.on_policy else ReplayBuffer(r.num_envs, r.buffer_capacity, self.obs_dim,
                                                               self.act_dim, self.H, seed=r.seed)
        self.rollout = RolloutStorage(r.num_envs) if self.on_policy else None
        self._extras: dict | None = None
        self.collector = ChunkCollector(self.venv, self.H, self.device)
        self.env_steps, self.update_credit, self.resets, self.evals = 0, 0.0, 0, 0
        self.recent: list[dict] = []  # the last EPISODE_WINDOW finished training episodes (train/episode_*)
        if resume:
            self._resume()
        else:
            if r.bc_checkpoint is None:
                raise ValueError("--run.bc-checkpoint is required: every method starts from a BC checkpoint "
                                 "(make one with `flowft pretrain`)")
            self.algo.init_from_bc(load_bc_actor(r.bc_checkpoint, self.dims, cfg.algo.policy))
            self.run_dir.mkdir(parents=True, exist_ok=False)
            write_json(self.run_dir / "config.json", self.config_dict)
            self.collector.start(reset_vec_env(self.venv, r.seed, stream=0))
        record_provenance(self.run_dir)  # one line per sitting: which code made (or resumed) this run
        self.logger = Logger(self.run_dir, r.log, self.config_dict, resume_step=self.env_steps if resume else None)

    # ----------------------------------------------------------------------------------------- resume
    def _resume(self) -> None:
        path = latest_checkpoint(self.run_dir)
        state, arrays = load_checkpoint(path, self.config_dict, self.dims, self.algo, self.buffer)
        self.env_steps, self.update_credit = state["env_steps"], state["update_credit"]
        self.resets, self.evals = state["resets"] + 1, state["evals"]
        # the train/episode_* window (last EPISODE_WINDOW finished episodes) continues across the resume; checkpoints
        # written before it was saved have no "recent" and restart the window empty
        self.recent = state.get("recent", [])
        if state["env_states"] is not None and env_states(self.venv) is not None:
            reset_vec_env(self.venv, self.cfg.run.seed, stream=0)
            restore_env_states(self.venv, state["env_states"])
            self.collector.load_state_arrays(arrays)
        else:  # simulator state cannot be restored: fresh episodes from a new seed stream
            self.collector.start(reset_vec_env(self.venv, self.cfg.run.seed, stream=self.resets))
        print(f"resumed {self.run_dir} from {path.name} at {self.env_steps} env steps", file=sys.stderr)

    def save(self) -> Path:
        loop_state = {"env_steps": self.env_steps, "update_credit": self.update_credit, "resets": self.resets,
                      "evals": self.evals, "env_states": env_states(self.venv),
                      "recent": self.recent}  # JSON-safe: the collector's episode dicts hold int/float/bool
        return save_checkpoint(self.run_dir / "checkpoints", self.env_steps, self.config_dict, self.dims, self.algo,
                               self.buffer if self.cfg.run.save_buffer and not self.on_policy else None, loop_state,
                               self.collector.state_arrays(), self.cfg.run.keep_checkpoints)

    # ------------------------------------------------------------------------------------------- eval
    def evaluate_now(self) -> dict[str, float]:
        r, out = self.cfg.run, {}
        for mode in r.eval_samplers:
            gen = torch.Generator(device=self.device).manual_seed(r.seed * 1_000_003 + self.evals)
            res = evaluate(lambda o, m=mode, g=gen: self.algo.act(o, m, generator=g), self.eval_venv, self.H,
                           r.eval_episodes, seed=r.seed + 10_000, stream=self.evals, device=self.device)
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

    def _step_and_train(self, train_stats: dict[str, list[float]]) -> float:
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
        self._train(train_stats)
        t_update = time.perf_counter() - tu
        if overlap:
            self._store(self.collector.step_wait())
        return t_update

    def _train(self, train_stats: dict[str, list[float]]) -> None:
        r = self.cfg.run
        if self.on_policy:  # update at the rollout boundary (or at the end of the budget), then replan every env
            if self.rollout.steps >= self.algo.rollout_steps or self.env_steps >= r.env_steps:
                for k, v in self.algo.update_rollout(self.rollout).items():
                    train_stats.setdefault(k, []).append(v)
                self.rollout.clear()
                self.collector.flush()
        elif self.env_steps >= r.start_training:
            self.update_credit += r.num_envs * r.utd
            while self.update_credit >= 1.0:
                for k, v in self.algo.update(self.buffer).items():
                    train_stats.setdefault(k, []).append(v)
                self.update_credit -= 1.0

    def run(self, stop_at: int | None = None) -> dict[str, float]:
        """Train to the budget. `stop_at` ends the loop early right after the checkpoint at that env step, as if
        the process had been killed there (used by the resume tests). Env worker processes are always closed."""
        try:
            return self._run(stop_at)
        finally:
            self.close()

    def close(self) -> None:
        for venv in (self.venv, self.eval_venv):
            venv.close()

    def _run(self, stop_at: int | None) -> dict[str, float]:
        r = self.cfg.run
        last_eval: dict[str, float] = {}
        last_eval_step = -1
        if self.env_steps == 0:
            last_eval, last_eval_step = self.evaluate_now(), 0
            self.logger.log(last_eval, 0, self.algo.grad_steps)
            print(summary_line(last_eval, 0), file=sys.stderr)
        bar = tqdm(total=r.env_steps, initial=self.env_steps, unit="step", dynamic_ncols=True,
                   disable=not (r.log.progress and sys.stderr.isatty()))
        train_stats: dict[str, list[float]] = {}
        t0, steps0, t_update, t_eval = time.perf_counter(), self.env_steps, 0.0, 0.0
        win = (t0, steps0, 0.0, 0.0)  # (time, env steps, update s, eval s) at the previous log row
        ckpt_due = False
        try:
            while self.env_steps < r.env_steps:
                t_update += self._step_and_train(train_stats)
                bar.update(r.num_envs)
                crossed = lambda every: self.env_steps % every < r.num_envs  # noqa: E731
                if crossed(r.log.log_every) or crossed(r.eval_every):
                    row = {f"train/{k}": float(np.mean(v)) for k, v in train_stats.items()}
                    row.update(self._episode_stats())
                    row.update(self._critic_diag())
                    dt = time.perf_counter() - t0
                    # sps excludes in-loop evaluation time; update_frac = learner share of training wall time
                    row.update({"time/sps": (self.env_steps - steps0) / (dt - t_eval),
                                "time/update_frac": t_update / (dt - t_eval), "time/eval_s": t_eval})
                    # the same over the last log window only (throughput once training runs, no warm-up phase)
                    now, wdt = time.perf_counter(), time.perf_counter() - win[0] - (t_eval - win[3])
                    row.update({"time/sps_window": (self.env_steps - win[1]) / wdt,
                                "time/update_frac_window": (t_update - win[2]) / wdt})
                    if crossed(r.eval_every) or self.env_steps >= r.env_steps:
                        te = time.perf_counter()
                        last_eval, last_eval_step = self.evaluate_now(), self.env_steps
                        t_eval += time.perf_counter() - te
                        row["time/eval_s"] = t_eval  # in-loop evaluation seconds so far, this eval included
                        row.update(last_eval)
                        print(summary_line(row, self.env_steps), file=sys.stderr)
                        if r.plot:
                            self._plot()
                    self.logger.log(row, self.env_steps, self.algo.grad_steps)
                    win = (now, self.env_steps, t_update, t_eval)
                    bar.set_postfix(succ=f"{row.get('train/episode_success', float('nan')):.2f}",
                                    sps=f"{row['time/sps']:.0f}")
                    train_stats = {}
                ckpt_due = ckpt_due or crossed(r.ckpt_every)
                if ckpt_due and not (self.on_policy and self.rollout.steps):  # on-policy: rollout boundaries only
                    ckpt_due = False
                    self.save()
                    if stop_at is not None and self.env_steps >= stop_at:
                        bar.close()
                        self.logger.close()
                        return last_eval
        except DivergenceError as err:
            bar.close()
            (self.run_dir / "DIVERGED.txt").write_text(f"{err}\nat env step {self.env_steps}\n")
            print(f"training diverged: {err}. The last good checkpoint is kept; nothing was saved after it.",
                  file=sys.stderr)
            self.logger.close()
            raise
        bar.close()
        if last_eval_step != self.env_steps:
            last_eval = self.evaluate_now()
            self.logger.log(last_eval, self.env_steps, self.algo.grad_steps)
        self.save()
        if r.plot:
            self._plot()
        self.logger.close()
        return last_eval

    def _episode_stats(self) -> dict[str, float]:
        if not self.recent:
            return {}
        eps = self.recent
        return {"train/episode_success": float(np.mean([e["success"] for e in eps])),
                "train/episode_return": float(np.mean([e["return"] for e in eps])),
                "train/episode_length": float(np.mean([e["length"] for e in eps]))}

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
