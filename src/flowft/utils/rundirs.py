"""Run-directory housekeeping shared by `flowft bench` and `flowft quickstart`."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def move_aside(path: Path) -> Path:
    """Rename an unusable run dir to <dir>.aborted-<time> (never deleted silently); returns the new path."""
    dest = path.with_name(f"{path.name}.aborted-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while dest.exists():
        dest, n = dest.with_name(f"{path.name}.aborted-{time.strftime('%Y%m%d-%H%M%S')}-{n}"), n + 1
    path.rename(dest)
    print(f"moved {path} (no checkpoint) aside to {dest}", file=sys.stderr)
    return dest
