"""The exhaustive kill test (issue 19): a toy run is SIGKILLed at >= 20 random moments and resumed after each; its
final weights and metrics.csv (every column but the wall-clock time/*) must equal an uninterrupted run's.

Kill points, drawn per sitting from a fixed seed: a random delay (start-up, training, evaluation or a checkpoint
write: checkpoints come every 8 env steps per env, so many land inside one), the k-th os.replace (inside a
checkpoint commit, the last.txt pointer, a metrics.csv rewrite; half of them after the rename), the k-th fsync (a
checkpoint's manifest and files, a metrics row), the k-th metrics row written halfway, and the k-th directory
removal of checkpoint rotation; every sitting also dies before a checkpoint past a random limit, so that none
finishes the run before the last. The counts are printed (`-s`) for the reports.
"""

import csv
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import final_weights, make_bc_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # 25 sittings of a 1280-step run: ~5 min on 2 idle cores

KILLS = 24  # kill sittings before the run is let finish (>= 20 required)
STEPS = 1280

# Runs `flowft` with one kill point armed: argv = MODE K AFTER LIMIT FLOWFT_ARGS... Whatever the mode, the process
# also dies just before writing a checkpoint at env step >= LIMIT, so that no kill sitting finishes the run and each
# one makes a bounded amount of progress.
KILLER = r'''
import os, shutil, signal, sys
mode, k, after, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
calls = [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def armed(real, partial=None):
    def wrapper(*a, **kw):
        calls[0] += 1
        if calls[0] == k:
            if partial is not None:
                partial(*a)
            elif after:
                real(*a, **kw)
            die()
        return real(*a, **kw)
    return wrapper

if mode == "replace":
    os.replace = armed(os.replace)
elif mode == "fsync":
    os.fsync = armed(os.fsync)
elif mode == "rmtree":
    shutil.rmtree = armed(shutil.rmtree)
elif mode == "row":
    import flowft.utils.logging as L
    def half_row(path, text):
        with open(path, "a") as f:
            f.write(text[: max(1, len(text) // 2)])
    L._append = armed(L._append, half_row)
from flowft.train.loop import Trainer
real_save = Trainer.save
def save(self):
    if self.env_steps >= limit:
        die()
    return real_save(self)
Trainer.save = save
from flowft.cli import main
sys.exit(main(sys.argv[5:]))
'''

K_RANGE = {"replace": (1, 20), "fsync": (1, 30), "row": (1, 4), "rmtree": (1, 3), "timer": (0, 0)}


def train_args(bc, out, name):
    return ["train", "ogpo-plus-ca", "--task", "toy", "--run.bc-checkpoint", str(bc), "--run.env-steps", str(STEPS),
            "--run.start-training", "80", "--run.num-envs", "4", "--run.ckpt-every", "32", "--run.eval-every", "800",
            "--run.eval-episodes", "4", "--run.eval-envs", "4", "--run.no-plot", "--run.out-dir", str(out),
            "--run.run-name", name, "--algo.group-size", "4", "--run.log.log-every", "24", "--run.threads", "1",
            "--run.buffer-capacity", "4000"]


def curve(run_dir: Path) -> list[list[str]]:
    with (run_dir / "metrics.csv").open() as f:
        header, *rows = list(csv.reader(f))
    keep = [i for i, key in enumerate(header) if not key.startswith("time/")]
    return [[header[i] for i in keep]] + [[row[i] for i in keep] for row in rows]


def evidence(run: Path) -> list[str]:
    """What a kill left half-done (cleaned up by the next sitting)."""
    found = []
    ckpts = run / "checkpoints"
    if ckpts.is_dir() and any(p.suffix in (".tmp", ".old") for p in ckpts.iterdir()):
        found.append("checkpoint")
    metrics = run / "metrics.csv"
    if (metrics.exists() and not metrics.read_bytes().endswith(b"\n")) or (run / "metrics.csv.tmp").exists():
        found.append("metrics")
    return found


def _latest_step(run: Path) -> int:
    ckpts = run / "checkpoints"
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []
    return max(steps, default=0)


def _kill_sitting(cmd: list[str], log: Path, mode: str, rng: random.Random, run: Path) -> tuple[int, str]:
    """One process with a kill point: `mode` "timer" is SIGKILLed after a random delay once it trains (start-up,
    training, evaluation, or inside one of the frequent checkpoint writes), the others arm a kill inside (K_RANGE).
    Returns (exit code, what was armed)."""
    k, after = rng.randint(*K_RANGE[mode]), rng.random() < 0.5
    limit = min(_latest_step(run) + 32 * rng.randint(2, 6), STEPS - 32)
    armed = f"{mode}" + (f" #{k}{' after' if after else ''}" if mode != "timer" else "") + f" (limit {limit})"
    started = log.read_text().count("resumed") if log.exists() else 0
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-c", KILLER, mode, str(k), str(int(after)), str(limit), *cmd],
                                stdout=out, stderr=out)
        if mode == "timer":
            deadline = time.time() + 300  # from the moment it trains: a resume line, or the first run's checkpoint
            while proc.poll() is None and time.time() < deadline and not (
                    log.read_text().count("resumed") > started or (run / "checkpoints" / "last.txt").exists()):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=900), armed


def test_random_sigkills_resume_to_the_uninterrupted_result(tmp_path):
    bc = make_bc_checkpoint(tmp_path / "bc", steps=50)
    ref = subprocess.run([sys.executable, "-m", "flowft", *train_args(bc, tmp_path, "ref")], capture_output=True,
                         text=True, timeout=1800)
    assert ref.returncode == 0, ref.stderr[-3000:]
    run, log, rng = tmp_path / "killed", tmp_path / "killed.log", random.Random(19)
    kills, where, history = 0, {"checkpoint": 0, "metrics": 0}, []
    cmd = train_args(bc, tmp_path, "killed")
    while kills < KILLS:
        mode = "timer" if not kills else rng.choice(["timer", "timer", "replace", "fsync", "row", "rmtree"])
        rc, armed = _kill_sitting(cmd, log, mode, rng, run)
        history.append(f"{armed}: rc {rc}")
        assert rc == -signal.SIGKILL, f"sitting {kills + 1} ({armed}) was not killed:\n{log.read_text()[-3000:]}"
        kills += 1
        for kind in evidence(run):
            where[kind] += 1
        cmd = ["resume", str(run)]
    last = subprocess.run([sys.executable, "-m", "flowft", *cmd], capture_output=True, text=True, timeout=1800)
    assert last.returncode == 0, f"the final resume failed:\n{last.stderr[-3000:]}"
    print(f"\nkills survived: {kills}/{kills}, each resumed (left half-done: a checkpoint {where['checkpoint']}x, "
          f"metrics.csv {where['metrics']}x); sittings: {'; '.join(history)}")
    assert kills >= 20, history
    a, b = final_weights(tmp_path / "ref"), final_weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), "final weights differ"
    assert curve(run) == curve(tmp_path / "ref"), "metrics.csv differs"
