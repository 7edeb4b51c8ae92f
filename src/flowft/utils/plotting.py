"""Learning curves from run directories' metrics.csv: success vs env steps, mean and 95 % interval over seeds.

Each evaluated sampler (the `eval/<sampler>/success` columns) is one line style with markers at the evaluations,
labelled by what it is (a "bon" with best_of_n = 1 is one SDE sample); a dotted line marks the BC start (the
evaluation at env step 0), and a thin line the training episodes' success between evaluations. Runs of one
(task, algorithm) are averaged over the env steps they all have; `notes` says when they differ in length or share a
seed (the interval then is not over independent seeds).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SAMPLER_ORDER = ("ode", "sde", "bon")
STYLES = {"ode": ("-", "o"), "sde": ("--", "s"), "bon": ("-.", "^")}
TRAIN_KEY = "train/episode_success"


def read_metrics(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    with (Path(run_dir) / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get(key):
                xs.append(float(row["env_steps"]))
                ys.append(float(row[key]))
    return np.array(xs), np.array(ys)


def eval_keys(run_dirs: list[Path]) -> list[str]:
    """The eval/<sampler>/success columns of these runs, ode, sde, bon first."""
    found: set[str] = set()
    for d in run_dirs:
        with (Path(d) / "metrics.csv").open() as f:
            found.update(k for k in (csv.DictReader(f).fieldnames or ()) if k.startswith("eval/")
                         and k.endswith("/success") and k.count("/") == 2)
    rank = {s: i for i, s in enumerate(SAMPLER_ORDER)}
    return sorted(found, key=lambda k: (rank.get(k.split("/")[1], len(rank)), k))


def sampler_label(key: str, cfg: dict) -> str:
    """What the sampler of `eval/<sampler>/success` is, for the legend."""
    s = key.split("/")[1]
    if s == "bon":
        n = cfg.get("algo", {}).get("best_of_n")
        return "SDE, 1 sample (best_of_n=1)" if n == 1 else f"Best-of-{n or 'N'}"
    return {"ode": "ODE", "sde": "SDE, 1 sample"}.get(s, s)


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, ys [runs, steps]) over the env steps every run evaluated (never index-aligned: runs with other eval
    intervals or lengths would be averaged across different steps)."""
    common = curves[0][0]
    for x, _ in curves[1:]:
        common = np.intersect1d(common, x)
    return common, np.stack([y[np.isin(x, common)] for x, y in curves])


def group_notes(task: str, algo: str, dirs: list[Path], cfgs: list[dict], key: str) -> list[str]:
    notes = []
    ends = {d: read_metrics(d, key)[0] for d in dirs}
    lens = {d: (int(x[-1]) if len(x) else 0) for d, x in ends.items()}
    if len(set(lens.values())) > 1:
        notes.append(f"{task}/{algo}: runs differ in length ({', '.join(f'{d.name}: {n}' for d, n in lens.items())} "
                     f"env steps); the mean covers the steps all of them evaluated")
    seeds = [c.get("run", {}).get("seed") for c in cfgs]
    if len(set(seeds)) < len(seeds):
        notes.append(f"{task}/{algo}: {len(seeds)} runs but only {len(set(seeds))} distinct seed(s) {sorted(set(seeds))}"
                     "; the interval is not over independent seeds")
    return notes


def _load(run_dirs: list[Path], notes: list[str]) -> dict[tuple[str, str], list[tuple[Path, dict]]]:
    groups: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for d in map(Path, run_dirs):
        cfg = json.loads((d / "config.json").read_text())
        if "run" not in cfg:  # a BC run: its result is the finetuning runs' step-0 evaluation
            notes.append(f"{d}: not a training run (kind {cfg.get('kind')!r}), skipped")
            continue
        groups.setdefault((cfg["run"]["task"], cfg["algo_name"]), []).append((d, cfg))
    return groups


def _draw_group(ax, dirs, cfgs, keys, color, algo: str) -> None:
    n_seeds = len({c.get("run", {}).get("seed") for c in cfgs})
    n = f"n={len(dirs)}" if n_seeds == len(dirs) else f"{len(dirs)} runs, {n_seeds} seed(s)"
    for key in keys:
        curves = [c for c in (read_metrics(d, key) for d in dirs) if len(c[0])]
        if not curves:
            continue
        x, ys = mean_curve(curves)
        if not len(x):
            continue
        mean = ys.mean(0)
        line, marker = STYLES.get(key.split("/")[1], (":", "x"))
        ax.plot(x, mean, line, marker=marker, markersize=4, color=color,
                label=f"{algo} [{sampler_label(key, cfgs[0])}] ({n})")
        if len(curves) > 1:
            half = 1.96 * ys.std(0, ddof=1) / np.sqrt(len(curves))
            ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.2)
        if x[0] == 0:  # the evaluation before any finetuning: the BC start
            ax.axhline(mean[0], color=color, linestyle=":", linewidth=1,
                       label=f"{algo} BC start [{sampler_label(key, cfgs[0])}] {mean[0]:.2f}")
    train = [c for c in (read_metrics(d, TRAIN_KEY) for d in dirs) if len(c[0])]
    if train:
        x, ys = mean_curve(train)
        ax.plot(x, ys.mean(0), "-", color=color, alpha=0.35, linewidth=1,
                label=f"{algo} training episodes (rolling mean)")


def plot_runs(run_dirs: list[Path], out: Path, keys: tuple[str, ...] | None = None,
              notes: list[str] | None = None) -> Path:
    """One panel per task, one colour per algorithm, line style + marker per sampler; seeds are averaged with a
    normal-approximation 95 % interval (t-interval would need scipy). `keys`: default every eval/<sampler>/success
    column found. Problems worth telling (lengths, shared seeds, skipped dirs) are appended to `notes`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = notes if notes is not None else []
    groups = _load(run_dirs, notes)
    if not groups:
        raise ValueError("no training run directories to plot (config.json with a 'run' section)")
    keys = list(keys) if keys else eval_keys([d for g in groups.values() for d, _ in g])
    tasks = sorted({t for t, _ in groups})
    algos = sorted({a for _, a in groups})
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(algos)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
    for (task, algo), members in sorted(groups.items()):
        dirs, cfgs = [d for d, _ in members], [c for _, c in members]
        if keys:
            notes.extend(group_notes(task, algo, dirs, cfgs, keys[0]))
        ax = axes[0, tasks.index(task)]
        _draw_group(ax, dirs, cfgs, keys, colors[algo], algo)
    for ax, task in zip(axes[0], tasks):
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
