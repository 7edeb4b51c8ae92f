"""Guards of a training sitting: one process per run dir (flock), run names that never collide, stopping on
SIGINT/SIGTERM at a safe point, and the cheap pre-flight checks that must fail before any simulator starts.

Why: two concurrent `flowft resume` of one run deleted each other's checkpoints and duplicated metrics rows; two runs
started in the same second got the same default name; SIGTERM exited without a checkpoint and Ctrl-C printed a
traceback (issue 19, items 7-9).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from flowft.errors import CheckpointError, ConfigError
from flowft.registry import task_slug

if TYPE_CHECKING:
    from flowft.config import TrainConfig

LOCK_NAME = "run.lock"
"""Lock file inside a run dir, held (flock) by the process training it; it says which pid/host holds it."""
_SIM_MODULE = {"robomimic": "robosuite", "adroit": "gymnasium_robotics", "kitchen": "gymnasium_robotics"}


class RunInterrupted(SystemExit):
    """A sitting stopped by SIGINT/SIGTERM after writing what it could; exits 128 + signal (130 / 143). A SystemExit
    so that the CLI and `python -m flowft.bench.worker` exit with that code without a traceback."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop (the CLI's handler): unwinds like Ctrl-C so env workers are closed."""


# --------------------------------------------------------------------------------------------------- locking
class RunLock:
    """Exclusive flock on a lock file for the life of a sitting. The kernel drops it when its holder exits however
    it exits (SIGKILL included), so a crash never leaves a stale lock to clean up."""

    def __init__(self, file):
        self._file = file

    @classmethod
    def acquire(cls, lock_file: Path, what: str) -> RunLock:
        """Take the lock or raise CheckpointError naming the holder. A second process only opens the existing file
        for reading its holder line: it writes nothing."""
        f = open(lock_file, "a+")  # noqa: SIM115 (kept open: closing it releases the lock)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CheckpointError(f"{what} is in use by {holder} (lock file {lock_file}); wait for it to finish or "
                                  "stop that process first") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        return cls(f)

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def claim_run_dir(path: Path, explicit: bool) -> Path:
    """Create a new run dir atomically (mkdir is the arbiter between concurrent processes). A default name that
    is taken gets -2, -3, ... appended; an explicitly named one that exists is an error pointing at resume."""
    path = Path(path)
    if explicit:
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise CheckpointError(f"run dir {path} already exists: continue it with `flowft resume {path}`, or "
                                  "choose another --run.run-name") from None
        return path
    for i in range(1, 10_000):
        cand = path if i == 1 else path.with_name(f"{path.name}-{i}")
        try:
            cand.mkdir(parents=True, exist_ok=False)
            return cand
        except FileExistsError:
            continue
    raise CheckpointError(f"{path.parent}: could not find a free run name after {path.name}-9999")


def lock_holder(lock_file: Path) -> str | None:
    """Who holds a lock file ("pid N on host H since T"), None when nobody does. Opens it read-only: writes nothing."""
    try:
        f = open(lock_file)  # noqa: SIM115
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def check_new_run_dir(path: Path) -> None:
    """Cheap early form of claim_run_dir's error for an explicit name (before any simulator starts)."""
    path = Path(path)
    if path.exists():
        holder = lock_holder(path / LOCK_NAME)
        busy = f" and is in use by {holder}" if holder else ""
        raise CheckpointError(f"run dir {path} already exists{busy}: continue it with `flowft resume {path}`, or "
                              "choose another --run.run-name")


def require_run_dir(run_dir: Path) -> Path:
    """The run's config.json, or one line saying why `run_dir` is not a run dir (and what to do with a dir a kill
    left between its creation and its config.json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run dir {run_dir} does not exist")
    cfg_file = run_dir / "config.json"
    if not cfg_file.is_file():
        leftovers = [p.name for p in run_dir.iterdir() if p.name not in (LOCK_NAME, "config.json.tmp")]
        hint = ("; it holds nothing else (the process creating it was killed): delete it and start the run again"
                if not leftovers else "")
        raise CheckpointError(f"{run_dir}: not a run directory (no config.json){hint}")
    return cfg_file


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run dir has (or had, mid-rename) a checkpoint: any <step> or <step>.old dir, or a last.txt that
    names a step (its dir may be lost: then the resume stops instead of silently starting over). An empty or
    garbage last.txt proves nothing. False means a resume starts over from config.json (nothing trained yet is
    lost beyond the first checkpoint)."""
    ckpts = Path(run_dir) / "checkpoints"
    if not ckpts.is_dir():
        return False
    for p in ckpts.iterdir():
        if p.name.split(".")[0].isdigit() and not p.name.endswith(".tmp"):
            return True
    last = ckpts / "last.txt"
    try:
        return last.is_file() and last.read_text(errors="replace").strip().isdigit()
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------- stopping
class GracefulStop:
    """While active (main thread only), the first SIGINT/SIGTERM only records the request: the training loop writes
    a checkpoint at its next safe point and raises RunInterrupted. A second signal stops at once (checkpoint writes
    are atomic, so that loses only the steps since the last checkpoint)."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.signum, self._old = run_dir, None, {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(f"\n{name} again: stopping now, without a new checkpoint. Continue with: flowft resume "
                  f"{self.run_dir}", file=sys.stderr)
            raise RunInterrupted(signum)
        self.signum = signum
        print(f"\n{name}: stopping at the next safe point after writing a checkpoint ({name} again stops at once)",
              file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


@contextlib.contextmanager
def children_ignore_stop_signals():
    """Env worker processes started inside inherit an ignored SIGINT and SIGTERM (kept across exec), so a terminal's
    Ctrl-C or a scheduler's SIGTERM sent to the whole process group reaches only the main process, which stops at a
    safe point and then closes its workers; gymnasium's workers would otherwise die first and break the step that
    writes the checkpoint. A worker whose main process is killed still exits: its pipe closes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------- cheap checks
def missing_simulator(task_name: str) -> str | None:
    """The pip extra a task needs and lacks (None when importable or not needed): checked before any env is built."""
    from flowft.registry import get_task

    extra = get_task(task_name).extra
    if extra and importlib.util.find_spec(_SIM_MODULE.get(extra, extra)) is None:
        return extra
    return None


def require_simulator(task_name: str) -> None:
    extra = missing_simulator(task_name)
    if extra:
        raise ConfigError(f"--run.task {task_name} needs the simulator extra: pip install 'flowft[{extra}]' (from a "
                          f"checkout: pip install -e '.[{extra}]')")


def task_dims(task) -> dict[str, int]:
    """Env dims without starting the vectorised envs: the task metadata when it states them (robosuite, Adroit,
    Kitchen), else one in-process env (cheap for the pure-numpy tasks). The Trainer re-checks them on the real envs."""
    meta = task.meta()
    if "obs_dim" in meta and "action_dim" in meta:
        obs_dim, act_dim = int(meta["obs_dim"]), int(meta["action_dim"])
    else:
        env = task.make(False)
        try:
            obs_dim = int(np.prod(env.observation_space.shape))
            act_dim = int(np.prod(env.action_space.shape))
        finally:
            env.close()
    return {"obs_dim": obs_dim, "act_dim": act_dim, "chunk_len": task.chunk_len}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--run.device {name}: CUDA is not available on this machine")
    return dev


def default_run_dir(cfg: TrainConfig) -> Path:
    """<out_dir>/<run_name>, default <algo>-<task>-s<seed>-<time>; a default name that is taken gets -2, -3, ...
    when the dir is created (runguard.claim_run_dir)."""
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    name = cfg.run.run_name or f"{cfg.algo_name}-{task_slug(cfg.run.task)}-s{cfg.run.seed}-{stamp}"
    return Path(cfg.run.out_dir) / name
