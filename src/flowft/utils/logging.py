"""Fan-out metric logger: CSV always, stdout summaries, optional TensorBoard and W&B (offline works without network).

Keys live under `train/`, `eval/`, `time/`; every row carries `env_steps` and `grad_steps`, and `time/wall_s`: wall-clock
seconds since the run started, summed over sittings (a resume continues from the last kept row's value; the time
between that row and the interruption is not counted). Files written before the column existed read as before: their
rows have it empty, and the column is added on the next row.

metrics.csv is only ever appended to (one write of a whole row, fsynced) or replaced atomically (temp file + fsync
+ os.replace): a SIGKILL during a rewrite once left it at 0 bytes and the next resume carried on without the learning
curve (issue 19). Checkpoints record how many rows and which columns the file had (`Logger.state()`); a resume keeps
exactly those rows (later ones are replayed identically) and refuses a history that lost any of them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

BASE_KEYS = ["env_steps", "grad_steps"]
WALL_KEY = "time/wall_s"


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the [tensorboard] extra)."""
    wandb: Literal["disabled", "offline", "online"] = "disabled"
    """W&B mode; `offline` writes locally (sync later with `wandb sync`)."""
    wandb_project: str = "flowft"
    """W&B project name."""
    log_every: int = 1000
    """Env steps between train-metric rows."""
    progress: bool = True
    """Progress bars with ETA (training env steps, BC steps, evaluations); shown only on a terminal."""


class History(NamedTuple):
    """What a resume keeps of metrics.csv: columns, rows (str cells, empty ones left out) and what is wrong, if
    anything (None = intact)."""
    keys: list[str]
    rows: list[dict]
    problem: str | None


def _append(path: Path, text: str) -> None:
    """One write of whole rows, flushed to disk before the checkpoint that counts them can be written."""
    with path.open("a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text` all at once: a crash leaves the old file or the new one, never a mix or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # directory fsync is not portable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the rename itself durable
        finally:
            os.close(fd)


def _csv_text(keys: list[str], rows: list[dict], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)  # csv's "\r\n" rows, as the files written so far
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def read_history(path: Path, expect_rows: int | None = None, expect_keys: list[str] | None = None,
                 resume_step: int | None = None) -> History:
    """The part of metrics.csv a resume keeps. With `expect_rows`/`expect_keys` (what the checkpoint recorded) that
    is exactly the first expect_rows rows, whose header must start with expect_keys; rows after them were written
    after the checkpoint and are dropped (the resumed run logs them again, identically). Without them (checkpoints
    written before the count was saved) it is the complete rows up to `resume_step`."""
    want = expect_rows or 0
    if not path.exists():
        return History(list(expect_keys or BASE_KEYS), [], f"is missing (the checkpoint recorded {want} rows)"
                       if want else None)
    text = path.read_text()
    if not text:
        return History(list(expect_keys or BASE_KEYS), [], f"is empty (0 bytes; the checkpoint recorded {want} "
                       "rows)" if want else None)
    lines = text.split("\n")  # the last element is "" when the file ends with a complete row
    header = next(csv.reader([lines[0]]))
    if len(lines) < 2 or header[:2] != BASE_KEYS or len(set(header)) != len(header) or \
            (expect_keys is not None and header[:len(expect_keys)] != list(expect_keys)):
        return History(list(expect_keys or BASE_KEYS), [], f"has a wrong header {header[:4]}... (expected "
                       f"{(expect_keys or BASE_KEYS)[:4]}...)")
    rows, bad = [], None
    for i, fields in enumerate(csv.reader(lines[1:-1]), start=2):  # complete lines only (each ended by \n)
        if expect_rows is not None and len(rows) == expect_rows:
            break
        if len(fields) != len(header) or not fields[0].lstrip("-").isdigit():
            bad = f"line {i} is not a complete row ({len(fields)} of {len(header)} fields)"
            break
        row = {k: v for k, v in zip(header, fields) if v != ""}
        if resume_step is not None and expect_rows is None and int(row["env_steps"]) > resume_step:
            continue
        step, last = int(row["env_steps"]), int(rows[-1]["env_steps"]) if rows else 0
        if expect_rows is not None and (step < last or (resume_step is not None and step > resume_step)):
            # the count alone passes when rows the checkpoint counted were lost and later ones moved up
            bad = f"line {i} (env step {step}) is out of place: rows the checkpoint counted are missing"
            break
        rows.append(row)
    if expect_rows is None:
        keys = BASE_KEYS + list(dict.fromkeys(k for r in rows for k in r if k not in BASE_KEYS))
        return History(keys, rows, bad)
    keys = list(expect_keys or BASE_KEYS)
    keys += list(dict.fromkeys(k for r in rows for k in r if k not in keys))
    if len(rows) < expect_rows:
        why = bad or "it ends early"
        return History(keys, rows, f"has {len(rows)} complete rows but the checkpoint recorded {expect_rows} "
                                   f"(truncated or damaged: {why})")
    return History(keys, rows, None)


def keep_damaged(path: Path) -> Path:
    """Copy a damaged metrics.csv aside (metrics.csv.damaged-<time>) before a repair replaces it."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    if path.exists():
        shutil.copy2(path, aside)
    return aside


class Logger:
    def __init__(self, run_dir: Path, cfg: LogConfig, config_dict: dict, resume_step: int | None = None,
                 history: History | None = None):
        """A fresh metrics.csv, or (resume) the rows of `history` (see read_history; `resume_step` reads the old
        way: complete rows up to that step)."""
        self.path = run_dir / "metrics.csv"
        if history is None and resume_step is not None:
            history = read_history(self.path, resume_step=resume_step)
        self.rows: list[dict] = list(history.rows) if history else []
        self.keys: list[str] = list(history.keys) if history else list(BASE_KEYS)
        walls = [float(r[WALL_KEY]) for r in self.rows if r.get(WALL_KEY, "") != ""]
        self._wall0 = time.monotonic() - (walls[-1] if walls else 0.0)
        self._rewrite()
        self.tb = self.wandb = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # optional extra

            self.tb = SummaryWriter(str(run_dir / "tb"))
        if cfg.wandb != "disabled":
            import wandb  # optional extra

            id_file = run_dir / "wandb_id.txt"
            run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
            id_file.write_text(run_id)
            self.wandb = wandb.init(project=cfg.wandb_project, mode=cfg.wandb, id=run_id, resume="allow",
                                    config=config_dict, dir=str(run_dir))

    def state(self) -> dict:
        """What a checkpoint records about the file: its row count and columns at that moment."""
        return {"rows": len(self.rows), "keys": list(self.keys)}

    def _rewrite(self) -> None:
        write_atomic(self.path, _csv_text(self.keys, self.rows, header=True))

    def log(self, metrics: dict[str, float], env_steps: int, grad_steps: int) -> None:
        row = {"env_steps": env_steps, "grad_steps": grad_steps, **metrics}
        row.setdefault(WALL_KEY, round(time.monotonic() - self._wall0, 3))
        self.rows.append(row)
        new = [k for k in row if k not in self.keys]
        if new:  # a new column: the header changes, so the file is replaced as a whole
            self.keys += new
            self._rewrite()
        else:
            _append(self.path, _csv_text(self.keys, [row], header=False))
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, env_steps)
        if self.wandb is not None:
            self.wandb.log(metrics, step=env_steps)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def summary_line(metrics: dict[str, float], env_steps: int) -> str:
    keep = [k for k in metrics if k.startswith("eval/") or k in ("train/critic_loss", "train/q_mean", "time/sps")]
    parts = [f"{k}={metrics[k]:.3g}" for k in keep if isinstance(metrics[k], (int, float)) and math.isfinite(metrics[k])]
    return f"[{env_steps:>9d}] " + " ".join(parts)


def console(msg: str) -> None:
    """One line to stderr that never breaks a progress bar: tqdm.write prints above any active bar (a plain print
    glued the line onto the bar's)."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _fmt(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or (math.isfinite(v) and float(v).is_integer() and abs(v) < 1e12):
        return str(int(v))
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def summary_table(metrics: dict, title: str = "") -> str:
    """Final results as one `key  value` row each, grouped by prefix (eval/, bc/, train/, time/ ...), values with
    four significant digits: what `flowft train / resume / pretrain` print at the end instead of a raw dict."""
    keys = sorted(metrics, key=lambda k: (k.split("/")[0] != "eval", k.split("/")[0], k))
    width = max((len(k) for k in keys), default=0)
    lines = [title] if title else []
    group = None
    for k in keys:
        if group is not None and k.split("/")[0] != group:
            lines.append("")
        group = k.split("/")[0]
        lines.append(f"  {k:<{width}}  {_fmt(metrics[k])}")
    return "\n".join(lines)


def results_table(rows: dict[str, dict], first: str = "sampler",
                  columns: tuple[str, ...] = ("success", "return", "success_length", "episodes")) -> str:
    """{row name: {column: value}} as an aligned text table (`flowft eval`: one row per sampler)."""
    cells = [[first, *columns]] + [[name, *(_fmt(r.get(c, float("nan"))) for c in columns)] for name, r in rows.items()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def one_line_warnings() -> None:
    """flowft's own warnings (a damaged checkpoint, a guess about a demo file) print as one line, `flowft: warning:
    ...`, instead of Python's `file:line: Category: ...` plus a source line; other warnings keep Python's format."""
    import warnings

    python_format = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if category.__module__.startswith("flowft."):
            return f"flowft: warning: {message}\n"
        return python_format(message, category, filename, lineno, line)

    warnings.formatwarning = fmt
