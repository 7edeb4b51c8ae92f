"""Which code made a run: a digest of the installed flowft sources, the git commit when there is one, and the
library versions, appended to <run_dir>/provenance.jsonl once per sitting (a start and every resume).

Why: a benchmark grid runs for hours as subprocesses of an editable install, so a source edit made while it runs
silently changes the code of every later cell. `flowft report` lists each run's source digest in runs.csv and
warns when the runs it aggregates were made by different code (tests/test_provenance.py).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the relative path and bytes of every .py file of the package, sorted (12 hex digits). The same
    for a git checkout, an editable install and a wheel of the same sources."""
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    import numpy
    import torch

    from flowft import __version__

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", str(PACKAGE_DIR))) if commit else None
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "flowft": __version__, "source": source_digest(),
            "git_commit": commit, "git_dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "host": platform.node()}


def record(run_dir: str | Path) -> dict:
    """Append this process's provenance to run_dir/provenance.jsonl; returns it."""
    info = provenance()
    with (Path(run_dir) / "provenance.jsonl").open("a") as f:
        f.write(json.dumps(info) + "\n")
    return info


def sources(run_dir: str | Path) -> list[str]:
    """Source digests of every sitting of a run, in order without repeats ([] for runs made before provenance)."""
    path = Path(run_dir) / "provenance.jsonl"
    if not path.exists():
        return []
    digests = [json.loads(line)["source"] for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(digests))
