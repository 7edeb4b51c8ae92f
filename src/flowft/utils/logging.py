"""Fan-out metric logger: CSV always, stdout summaries, optional TensorBoard and W&B (offline works without network).

Keys live under `train/`, `eval/`, `time/`; every row carries `env_steps` and `grad_steps`.
"""

from __future__ import annotations

import csv
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the [tensorboard] extra)."""
    wandb: Literal["disabled", "offline", "online"] = "disabled"
    """W&B mode; `offline` writes locally (sync later with `wandb sync`)."""
    wandb_project: str = "flowft"
    log_every: int = 1000
    """Env steps between train-metric rows."""
    progress: bool = True
    """tqdm bar over env steps (auto-disabled when stdout is not a TTY)."""


class Logger:
    def __init__(self, run_dir: Path, cfg: LogConfig, config_dict: dict, resume_step: int | None = None):
        self.path = run_dir / "metrics.csv"
        self.rows: list[dict] = []
        self.keys: list[str] = ["env_steps", "grad_steps"]
        if resume_step is not None and self.path.exists():
            with self.path.open() as f:
                for row in csv.DictReader(f):
                    if float(row["env_steps"]) <= resume_step:
                        self.rows.append({k: v for k, v in row.items() if v != ""})
            for row in self.rows:
                self.keys += [k for k in row if k not in self.keys]
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

    def _rewrite(self) -> None:
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.keys)
            w.writeheader()
            w.writerows(self.rows)

    def log(self, metrics: dict[str, float], env_steps: int, grad_steps: int) -> None:
        row = {"env_steps": env_steps, "grad_steps": grad_steps, **metrics}
        self.rows.append(row)
        new = [k for k in row if k not in self.keys]
        if new:
            self.keys += new
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.keys).writerow(row)
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, env_steps)
        if self.wandb is not None:
            self.wandb.log(metrics, step=env_steps)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def summary_line(metrics: dict[str, float], env_steps: int) -> str:
    keep = [k for k in metrics if k.startswith("eval/") or k in ("train/critic_loss", "train/q_mean", "time/sps")]
    parts = [f"{k}={metrics[k]:.3g}" for k in keep if isinstance(metrics[k], (int, float)) and math.isfinite(metrics[k])]
    return f"[{env_steps:>9d}] " + " ".join(parts)
