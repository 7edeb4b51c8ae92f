"""Per-job exclusive locks of `flowft bench`: <cell>.lock next to each run dir, held (flock) by the job's process."""

from __future__ import annotations

from pathlib import Path


def lock_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


def try_lock(path: Path):
    """Take the exclusive lock of the job at `path` (<cell>.lock, flock): the open file to keep while the job runs,
    or None when another process holds it. The kernel drops the lock when its holder exits, however it exits, so
    a crashed sitting never leaves a stale lock. Two sittings of one suite at once would otherwise both start the
    same cell, and the second would move the first's live run dir aside (seen on 2026-11-27)."""
    import fcntl

    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    f = lock.open("a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def is_busy(path: Path) -> bool:
    """True while another process runs the job at `path` (its lock is held). Creates nothing: planning (and
    `--dry-run`) must not leave lock files or directories behind."""
    if not lock_path(path).exists():  # never locked, so nobody holds it
        return False
    f = try_lock(path)
    if f is None:
        return True
    f.close()
    return False
