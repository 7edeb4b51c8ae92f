"""Learning curves from run directories' metrics.csv: success vs env steps, mean and 95 % interval over seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def read_metrics(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    with (Path(run_dir) / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get(key):
                xs.append(float(row["env_steps"]))
                ys.append(float(row[key]))
    return np.array(xs), np.array(ys)


def plot_runs(run_dirs: list[Path], out: Path, keys: tuple[str, ...] = ("eval/bon/success", "eval/ode/success")) -> Path:
    """One panel per task, one colour per algorithm, line style per evaluator; seeds are averaged with a
    normal-approximation 95 % interval (t-interval would need scipy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[Path]] = {}
    for d in run_dirs:
        cfg = json.loads((Path(d) / "config.json").read_text())
        groups.setdefault((cfg["run"]["task"], cfg["algo_name"]), []).append(Path(d))
    tasks = sorted({t for t, _ in groups})
    algos = sorted({a for _, a in groups})
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(algos)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for (task, algo), dirs in sorted(groups.items()):
        ax = axes[0, tasks.index(task)]
        for key, style in zip(keys, ("-", "--")):
            curves = [read_metrics(d, key) for d in dirs]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)
            x, ys = curves[0][0][:n], np.stack([c[1][:n] for c in curves])
            mean = ys.mean(0)
            ax.plot(x, mean, style, color=colors[algo], label=f"{algo} [{key.split('/')[1]}] (n={len(curves)})")
            if len(curves) > 1:
                half = 1.96 * ys.std(0, ddof=1) / np.sqrt(len(curves))
                ax.fill_between(x, mean - half, mean + half, color=colors[algo], alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
