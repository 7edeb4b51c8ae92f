"""What a resume checks before any env starts (issue 19): the checkpoint's compatibility, the metrics history it
counted, the env-step budget (`flowft resume --env-steps`), and whether the run is already finished.

A run is finished when its latest checkpoint is at (or past) its budget and metrics.csv holds an evaluation row at
that step: the loop writes the budget's checkpoint only after the final evaluation's row, and for checkpoints of
older versions (written before their final evaluation) the row decides, so the final evaluation at a step is
recorded once. A resume of a finished run changes nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from flowft.errors import CheckpointError, ConfigError
from flowft.train.checkpointing import check_compatible, settle_checkpoints
from flowft.train.runguard import has_checkpoint
from flowft.utils.checkpoint import latest_checkpoint, read_checkpoint_json
from flowft.utils.config_io import read_json, write_json
from flowft.utils.logging import History, keep_damaged, read_history


@dataclass
class ResumePlan:
    checkpoint: Path | None
    """None: the run dir has no checkpoint yet and starts over from its config.json."""
    history: History | None = None
    """The metrics rows to continue (None: a fresh metrics.csv)."""
    done: int = 0
    """Env steps of the checkpoint."""
    final_eval: dict[str, float] = field(default_factory=dict)
    """The recorded final evaluation when the run is finished ({} otherwise)."""

    @property
    def finished(self) -> bool:
        return bool(self.final_eval)


def plan_resume(run_dir: Path, config: dict, dims: dict, repair: bool) -> ResumePlan:
    """Everything a resume can check cheaply, writing nothing (a changed budget is only checked here; the caller
    records it with record_budget once the checkpoint has loaded). The caller holds the run dir's lock."""
    budget = config["run"]["env_steps"]
    settle_checkpoints(run_dir / "checkpoints")  # also for a finished run, which never saves again
    if not has_checkpoint(run_dir):
        check_budget(run_dir, budget, done=0)
        print(f"{run_dir} has no checkpoint yet: starting over from its config.json", file=sys.stderr)
        return ResumePlan(None)
    ckpt = latest_checkpoint(run_dir)
    check_compatible(read_checkpoint_json(ckpt / "config.json"), config, dims, ckpt)
    state = read_checkpoint_json(ckpt / "training_state" / "state.json")
    done = int(state["env_steps"])
    history = check_history(run_dir, ckpt, state, repair)
    check_budget(run_dir, budget, done)
    plan = ResumePlan(ckpt, history, done)
    final = [row for row in history.rows if int(row["env_steps"]) == done and any(k.startswith("eval/") for k in row)]
    if done >= budget and final:
        plan.final_eval = {k: float(v) for k, v in final[-1].items() if k.startswith("eval/")}
    return plan


def check_history(run_dir: Path, ckpt: Path, state: dict, repair: bool) -> History:
    """The metrics rows the checkpoint counted (checkpoints written before the count: rows up to its step). A
    history that lost any of them stops the resume, naming the file and the fix, unless `repair`."""
    path, m = run_dir / "metrics.csv", state.get("metrics")
    hist = (read_history(path, m["rows"], m["keys"], resume_step=int(state["env_steps"])) if m is not None
            else read_history(path, resume_step=int(state["env_steps"])))
    if hist.problem is None:
        return hist
    if not repair:
        raise CheckpointError(f"{path} {hist.problem} (checkpoint {ckpt.name}); restore it from a backup, or resume "
                              f"with --repair-metrics to continue with its {len(hist.rows)} readable rows (the "
                              "damaged file is kept as metrics.csv.damaged-<time>)")
    aside = keep_damaged(path)
    print(f"warning: {path} {hist.problem}; continuing with its {len(hist.rows)} readable rows (the damaged file is "
          f"kept as {aside.name})", file=sys.stderr)
    return hist


def check_budget(run_dir: Path, budget: int, done: int) -> None:
    """A resume's env-step budget may extend a run (or keep it); one below the steps already done is refused."""
    old = read_json(run_dir / "config.json")["run"]["env_steps"]
    if budget != old and budget < done:
        raise ConfigError(f"--env-steps {budget}: {run_dir} has already done {done} env steps (budget {old}); give "
                          f"at least {done}")


def record_budget(run_dir: Path, budget: int) -> None:
    """A resume with another env-step budget records it in the run's config.json, after its checkpoint has loaded
    (a resume that fails before training changes nothing)."""
    cfg_file = run_dir / "config.json"
    stored = read_json(cfg_file)
    old = stored["run"]["env_steps"]
    if budget == old:
        return
    stored["run"]["env_steps"] = budget
    write_json(cfg_file, stored)
    print(f"{run_dir}: env-step budget {old} -> {budget}", file=sys.stderr)
