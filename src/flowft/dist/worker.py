"""Env workers for distributed acting: each owns a vector env and an acting copy of the algorithm (policy and the
critic Best-of-N acting reads), steps its envs with the shared ChunkCollector, and returns finished runs of
transitions to the learner. It never updates weights: the learner broadcasts them (`set_weights`), and each message
says which weight version acted, so the learner can log the policy lag.

`EnvWorker` is a plain class; the driver turns it into a Ray actor (dist/driver.py), so this module imports no Ray
and can be tested in-process. Shapes: T steps per message, N envs, H chunk, Do, Da.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from flowft.algos.base import Algorithm, act_sampler
from flowft.envs.make import make_vec_env, reset_vec_env
from flowft.registry import TaskSpec
from flowft.train.collector import ChunkCollector
from flowft.train.evaluate import eval_stream, evaluate

STEP_FIELDS = ("obs", "actions", "rewards", "terminated", "truncated", "next_obs", "success")
"""Arrays of a worker message, each [T, N, ...] (train/collector.StepResult)."""


class WorkerRestarted(RuntimeError):
    """A collect reached a worker that Ray restarted before the learner knew (it has no weights yet)."""


def worker_seed(seed: int, index: int, stream: int) -> int:
    """Independent seed of worker `index`'s `stream`-th start (envs and acting noise): one SeedSequence, not
    seed + index (adjacent runs would share streams; conventions.md A.2)."""
    return int(np.random.SeedSequence([seed, 1_000 + index, stream]).generate_state(1)[0])


def get_weights(algo: Algorithm) -> dict:
    """What a worker needs to act as the learner does: every module's tensors (numpy: the Ray object store shares
    them zero-copy between workers of a node) and the algorithm's counters (e.g. OGPO's Best-of-N switch-on)."""
    return {"modules": {name: {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
                        for name, m in algo.modules().items()},
            "extra": algo.extra_state()}


def load_weights(algo: Algorithm, weights: dict) -> None:
    modules = algo.modules()
    for name, state in weights["modules"].items():
        # object-store arrays are read-only: copy before handing them to torch
        modules[name].load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    algo.load_extra_state(weights["extra"])


def weight_bytes(weights: dict) -> int:
    return sum(v.nbytes for state in weights["modules"].values() for v in state.values())


class EnvWorker:
    def __init__(self, task: TaskSpec, algo_cls: type, algo_cfg, dims: dict, num_envs: int, seed: int, index: int,
                 vectorization: str | None = None, threads: int = 1):
        """`task` is the TaskSpec itself (pickled by Ray), so a task registered only in the driver (the benchmark's
        slow toy env) works on every worker."""
        torch.set_num_threads(threads)  # many workers share a node's cores; acting is a small batched forward
        self.seed, self.index, self.H = seed, index, dims["chunk_len"]
        self.venv = make_vec_env(task, num_envs, vectorization=vectorization)
        cpu = torch.device("cpu")
        self.algo = algo_cls(algo_cfg, dims["obs_dim"], dims["act_dim"], self.H, cpu, seed)
        self.collector = ChunkCollector(self.venv, self.H, cpu)
        self.version = -1

    def start(self, stream: int) -> int:
        """Fresh episodes from this worker's `stream` (the learner counts restarts and resumes into it, so a
        restarted worker never replays its predecessor's episodes). Returns the actor's pid."""
        s = worker_seed(self.seed, self.index, stream)
        self.algo.act_gen.manual_seed(s)
        self.collector.start(reset_vec_env(self.venv, s, stream=0))
        return os.getpid()

    def set_weights(self, version: int, weights: dict) -> None:
        load_weights(self.algo, weights)
        self.version = version

    def collect(self, steps: int) -> dict:
        """`steps` vector-env steps with the explore sampler: arrays [T, N, ...], the finished episodes, and the
        weight version that acted."""
        if self.version < 0:
            raise WorkerRestarted(f"env worker {self.index} (pid {os.getpid()}) has no weights: it was restarted")
        rows = [self.collector.step(lambda o: self.algo.act(o, "explore")) for _ in range(steps)]
        out: dict = {k: np.stack([getattr(r, k) for r in rows]) for k in STEP_FIELDS}
        out.update(finished=[e for r in rows for e in r.finished], version=self.version, worker=self.index)
        return out

    def evaluate(self, weights: dict, samplers: tuple[str, ...], episodes: int, seed: int, evals: int) -> dict:
        """The single-process loop's evaluation (Trainer.evaluate_now: same seeds, same generator per sampler), on
        this worker's envs with the given weights; it runs while the learner keeps updating."""
        load_weights(self.algo, weights)
        out = {}
        for mode in samplers:
            reset_seed, stream, gen_seed = eval_stream(seed, evals)
            gen = torch.Generator().manual_seed(gen_seed)
            res = evaluate(lambda o, m=mode, g=gen: act_sampler(self.algo, o, m, g), self.venv, self.H, episodes,
                           seed=reset_seed, stream=stream, device=torch.device("cpu"))
            out.update({f"eval/{mode}/{k}": v for k, v in res.items()})
        return out

    def close(self) -> None:
        self.venv.close()
