"""`flowft report DIRS --out OUT`: learning curves and tables from run directories (config.json + metrics.csv).

Metric: `eval/<sampler>/success` with sampler = each method's headline (registry AlgoSpec.headline: the deployed
policy) unless another is asked for. Runs are grouped by (task, method); each run is one seed.

Statistics (over seeds, n = number of runs in the group):
* curves: at every eval step that ALL runs of the group have logged (an unfinished seed truncates its group's
  curve), the mean and a 95 % Student-t interval mean +- t(0.975, n-1) * s / sqrt(n), s = sample std (ddof 1);
  no interval for n = 1.
* steps to threshold p: per run, the env step of the first eval after step 0 whose success is >= p and stays >= p
  at the next eval (the last eval counts alone). Both rules keep evaluation noise out: a BC start that already reads
  >= p is noise around the <= 50 % clip, and on Adroit door the unchanged BC policy read 0.33-0.52 over the six
  evals before its first update (64 episodes each). The table gives the mean over the runs that reached p and how
  many did ("k/n"); "—" when none did.
* final success: mean +- 95 % t-interval at the last step of the curve (its env step is printed next to it).
* throughput: per run, the last logged `time/sps` (env steps/s of the last sitting, evaluation excluded) and
  `time/update_frac` (learner share of the training wall time); mean over runs.

Outputs in OUT: curves.png, curves.csv, summary.csv (one row per task x method, with the run dirs used), runs.csv
(one row per run dir), throughput.csv, report.md, and report.json (the inputs: run-dir roots, sampler, label,
thresholds, methods, metrics). Run dirs are written relative to the working directory when they lie under it, so a
report made from the repository root names paths that exist in any checkout. `flowft.bench.verify.verify_report`
rebuilds a report from its report.json and lists every CSV that differs (`flowft report --verify OUT`;
tests/test_results.py runs it on every report under docs/results/).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowft.bench.stats import mean_ci
from flowft.utils.provenance import sources as provenance_sources

# One colour per method name, the same in every figure. Unknown names get a colour from a hash of the name.
METHOD_COLORS: dict[str, str] = {
    "ogpo": "#1f77b4", "ogpo-plus": "#17becf", "ogpo-ca": "#9467bd", "ogpo-plus-ca": "#d62728",
    "dppo": "#ff7f0e", "dsrl": "#2ca02c", "qc": "#8c564b", "bon-sft": "#c49c94", "expo": "#e377c2",
    "residual": "#bcbd22", "ogpo-awr": "#393b79", "ogpo-awr-fm": "#6b6ecf", "ogpo-bptt": "#637939",
    "ogpo-fpo": "#e7ba52", "bc": "#7f7f7f",
}
_EXTRA = ("#843c39", "#ad494a", "#d6616b", "#7b4173", "#a55194", "#ce6dbd", "#3182bd", "#6baed6", "#e6550d",
          "#fd8d3c", "#31a354", "#74c476", "#756bb1", "#9e9ac8", "#636363", "#969696")


def method_color(name: str) -> str:
    """Fixed colour of a method (stable across figures, runs and processes: crc32, not Python's salted hash)."""
    return METHOD_COLORS.get(name) or _EXTRA[zlib.crc32(name.encode()) % len(_EXTRA)]


# ------------------------------------------------------------------------------------------------- loading
@dataclass
class Run:
    path: Path
    task: str
    algo: str
    method: str
    seed: int
    metric: str
    steps: np.ndarray
    success: np.ndarray
    sps: float = math.nan
    update_frac: float = math.nan
    eval_s: float = math.nan
    sources: tuple[str, ...] = ()
    """Source digests of the code that made the run, one per distinct sitting (utils/provenance.py; () = made
    before runs recorded it)."""


def find_run_dirs(dirs: list[Path]) -> list[Path]:
    """Every directory under `dirs` with metrics.csv and a finetuning config.json (BC runs have no algo_name);
    run dirs that `flowft bench` moved aside (`*.aborted-*`) are not runs."""
    found = set()
    for d in dirs:
        if not Path(d).exists():
            raise ValueError(f"{d}: no such directory")
        for m in sorted(Path(d).rglob("metrics.csv")):
            cfg = m.parent / "config.json"
            if any(".aborted-" in part for part in m.parent.parts):
                continue
            if cfg.exists() and "algo_name" in json.loads(cfg.read_text()):
                found.add(m.parent.resolve())
    return sorted(found)


def shown(path: Path) -> str:
    """`path` relative to the working directory when it lies under it (portable across checkouts), else absolute."""
    path, cwd = Path(path).resolve(), Path.cwd().resolve()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def headline(algo: str) -> str:
    from flowft.registry import get_algorithm

    try:
        return get_algorithm(algo).headline
    except KeyError:
        print(f"warning: algorithm '{algo}' is not registered; its curve uses eval/ode/success", file=sys.stderr)
        return "ode"


def _last(rows: list[dict], key: str) -> float:
    vals = [float(r[key]) for r in rows if r.get(key)]
    return vals[-1] if vals else math.nan


def load_run(run_dir: Path, sampler: str = "headline", label: str = "algo") -> Run:
    cfg = json.loads((run_dir / "config.json").read_text())
    algo = cfg["algo_name"]
    metric = f"eval/{headline(algo) if sampler == 'headline' else sampler}/success"
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    pts = sorted({float(r["env_steps"]): float(r[metric]) for r in rows if r.get(metric)}.items())
    steps = np.array([p[0] for p in pts])
    return Run(run_dir, cfg["run"]["task"], algo, algo if label == "algo" else run_dir.parent.name,
               int(cfg["run"]["seed"]), metric, steps, np.array([p[1] for p in pts]),
               _last(rows, "time/sps"), _last(rows, "time/update_frac"), _last(rows, "time/eval_s"),
               tuple(provenance_sources(run_dir)))


def group_runs(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.task, r.method), []).append(r)
    order = list(METHOD_COLORS)
    rank = lambda m: (order.index(m) if m in order else len(order), m)  # noqa: E731
    return {k: sorted(groups[k], key=lambda r: (r.seed, str(r.path)))
            for k in sorted(groups, key=lambda k: (k[0], rank(k[1])))}


# --------------------------------------------------------------------------------------------- statistics
@dataclass
class Curve:
    steps: np.ndarray
    n: int
    mean: np.ndarray
    half: np.ndarray
    notes: list[str] = field(default_factory=list)


def curve(runs: list[Run]) -> Curve:
    """Mean and 95 % t half-width over runs at the eval steps every run has."""
    runs = [r for r in runs if len(r.steps)]
    if not runs:
        return Curve(np.zeros(0), 0, np.zeros(0), np.zeros(0))
    common = sorted(set.intersection(*(set(r.steps.tolist()) for r in runs)))
    ys = np.array([[dict(zip(r.steps.tolist(), r.success.tolist()))[s] for s in common] for r in runs])
    stats = [mean_ci(ys[:, i]) for i in range(len(common))]
    return Curve(np.array(common), len(runs), np.array([m for m, _ in stats]), np.array([h for _, h in stats]))


def steps_to(run: Run, threshold: float) -> float | None:
    """Env step of the first eval after step 0 with success >= threshold there and at the next eval (the last eval
    counts alone), None if never."""
    above = run.success >= threshold
    held = above & np.append(above[1:], True)  # this eval and the next one
    hit = np.nonzero(held & (run.steps > 0))[0]
    return float(run.steps[hit[0]]) if len(hit) else None


def summarize(key: tuple[str, str], runs: list[Run], thresholds) -> dict:
    c = curve(runs)
    row = {"task": key[0], "method": key[1], "metric": ";".join(sorted({r.metric for r in runs})),
           "n_seeds": c.n, "seeds": ";".join(str(r.seed) for r in runs)}
    row["start_mean"] = float(c.mean[0]) if c.n and c.steps[0] == 0 else math.nan
    for p in thresholds:
        hits = [s for s in (steps_to(r, p) for r in runs if len(r.steps)) if s is not None]
        row[f"steps_to_{p:g}_mean"] = float(np.mean(hits)) if hits else math.nan
        row[f"steps_to_{p:g}_reached"] = len(hits)
    row["final_step"] = float(c.steps[-1]) if c.n else math.nan
    row["final_mean"] = float(c.mean[-1]) if c.n else math.nan
    row["final_ci95"] = float(c.half[-1]) if c.n else math.nan
    row["run_dirs"] = ";".join(shown(r.path) for r in runs)
    return row


def throughput(key: tuple[str, str], runs: list[Run]) -> dict:
    mean = lambda xs: float(np.nanmean(xs)) if np.isfinite(xs).any() else math.nan  # noqa: E731
    return {"task": key[0], "method": key[1], "n_runs": len(runs),
            "sps_mean": mean(np.array([r.sps for r in runs])),
            "update_frac_mean": mean(np.array([r.update_frac for r in runs])),
            "eval_s_mean": mean(np.array([r.eval_s for r in runs])),
            "run_dirs": ";".join(shown(r.path) for r in runs)}


# ------------------------------------------------------------------------------------------------ outputs
def plot_curves(groups: dict[tuple[str, str], list[Run]], out: Path, title: str = "") -> dict[str, str]:
    """One panel per task, one fixed colour per method; shaded 95 % t-interval over seeds (the band is drawn
    clipped to [0, 1]; the CSVs keep the raw interval). Returns {method: colour} as read back from the drawn lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(t for t, _ in groups))
    many = len({m for _, m in groups}) > 5  # crowded: wider panels, fainter bands, legend beside the panels
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=((7 if many else 5) * max(1, len(tasks)), 4.2),
                             squeeze=False)
    for (task, method), runs in groups.items():
        ax, c = axes[0, tasks.index(task)], curve(runs)
        if not c.n:
            continue
        color = method_color(method)
        ax.plot(c.steps, c.mean, "-o", ms=3, color=color, label=f"{method} (n={c.n})")
        if c.n > 1:
            ax.fill_between(c.steps, np.clip(c.mean - c.half, 0, 1), np.clip(c.mean + c.half, 0, 1), color=color,
                            alpha=0.07 if many else 0.18, lw=0)
    metrics = sorted({r.metric for runs in groups.values() for r in runs})
    for ax, task in zip(axes[0], tasks):
        ax.set(title=task, xlabel="environment steps", ylabel="success rate", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        if many:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(fontsize=7)
    fig.suptitle(title or f"{', '.join(metrics)}: mean and 95 % t-interval over seeds", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    drawn = {line.get_label().split(" (n=")[0]: matplotlib.colors.to_hex(line.get_color())
             for ax in axes[0] for line in ax.get_lines()}
    plt.close(fig)
    return drawn


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows([{k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])


def _fmt_steps(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:,.0f}"


def _fmt_pm(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.2f} ± {half:.2f}" if math.isfinite(half) else f"{mean:.2f}"


def markdown_tables(summary: list[dict], through: list[dict], thresholds) -> str:
    """One success table per task (steps to each threshold, final success) and one throughput table."""
    head = ["method", "seeds", "start"] + [f"steps to {p:g}" for p in thresholds] + ["final (95 % CI)", "at step"]
    lines = []
    for task in dict.fromkeys(r["task"] for r in summary):
        lines += [f"### {task}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in (r for r in summary if r["task"] == task):
            cells = [r["method"], str(r["n_seeds"]), "—" if not math.isfinite(r["start_mean"]) else
                     f"{r['start_mean']:.2f}"]
            for p in thresholds:
                k = r[f"steps_to_{p:g}_reached"]
                cells.append("—" if k == 0 else f"{_fmt_steps(r[f'steps_to_{p:g}_mean'])} ({k}/{r['n_seeds']})")
            cells += [_fmt_pm(r["final_mean"], r["final_ci95"]), _fmt_steps(r["final_step"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    # evaluation seconds stay in throughput.csv only: runs logged time/eval_s before their row's own eval
    lines += ["### Throughput", "", "| task | method | runs | env steps/s | learner share |", "|---|---|---|---|---|"]
    for r in through:
        sps = "—" if not math.isfinite(r["sps_mean"]) else f"{r['sps_mean']:.0f}"
        frac = "—" if not math.isfinite(r["update_frac_mean"]) else f"{r['update_frac_mean']:.2f}"
        lines.append(f"| {r['task']} | {r['method']} | {r['n_runs']} | {sps} | {frac} |")
    return "\n".join(lines) + "\n"


def _runs_rows(groups, thresholds) -> list[dict]:
    rows = []
    for runs in groups.values():
        for r in runs:
            row = {"run_dir": shown(r.path), "task": r.task, "method": r.method, "algo": r.algo, "seed": r.seed,
                   "metric": r.metric, "n_evals": len(r.steps),
                   "last_step": float(r.steps[-1]) if len(r.steps) else math.nan,
                   "final_success": float(r.success[-1]) if len(r.steps) else math.nan}
            for p in thresholds:
                s = steps_to(r, p)
                row[f"steps_to_{p:g}"] = math.nan if s is None else s
            rows.append({**row, "sps": r.sps, "update_frac": r.update_frac, "source": ";".join(r.sources)})
    return rows


def provenance_note(runs: list[Run]) -> str:
    """A warning when the runs were made by more than one version of the code (source digests), '' otherwise."""
    digests = sorted({d for r in runs for d in r.sources})
    mixed = [r for r in runs if len(r.sources) > 1]
    unknown = sum(not r.sources for r in runs)
    if len(digests) <= 1:
        return "" if not unknown or unknown == len(runs) else \
            f"{unknown} of {len(runs)} runs predate provenance records (no provenance.jsonl): their code is unknown."
    note = (f"**Warning: these runs were made by {len(digests)} versions of the flowft sources** "
            f"({', '.join(digests)}; runs.csv `source` names each run's). Runs of one comparison should come from "
            "one version; check that the differences are outside the training path.")
    if mixed:
        note += f" {len(mixed)} run(s) were resumed under different code than they started with."
    if unknown:
        note += f" {unknown} run(s) predate provenance records."
    return note


def metric_means(groups: dict[tuple[str, str], list[Run]], key: str) -> dict[tuple[str, str], tuple[list, np.ndarray]]:
    """(task, method) -> (env steps every seed logged, seed-mean of a logged metric). `A:B` = per-row ratio A/B."""
    num, _, den = key.partition(":")
    out = {}
    for k, runs in groups.items():
        series = []
        for r in runs:
            with (r.path / "metrics.csv").open() as f:
                rows = [row for row in csv.DictReader(f) if row.get(num) and (not den or row.get(den))]
            series.append({float(row["env_steps"]): float(row[num]) / (float(row[den]) if den else 1.0)
                           for row in rows})
        common = sorted(set.intersection(*(set(x) for x in series))) if series else []
        if common:
            out[k] = (common, np.mean([[x[c] for c in common] for x in series], axis=0))
    return out


def plot_metric(groups: dict[tuple[str, str], list[Run]], key: str, out: Path) -> Path:
    """Seed-mean of a logged metric (e.g. train/actor/var_along_gradq, or a ratio `A:B`) vs env steps; same
    panels and colours as the learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(t for t, _ in groups))
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 3.8), squeeze=False)
    for (task, method), (steps, ys) in metric_means(groups, key).items():
        axes[0, tasks.index(task)].plot(steps, ys, "-o", ms=3, color=method_color(method),
                                        label=f"{method} (n={len(groups[(task, method)])})")
    for i, task in enumerate(tasks):
        axes[0, i].set(title=task, xlabel="environment steps", ylabel=key.replace(":", " / "))
        if axes[0, i].lines:
            axes[0, i].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(dirs: list[Path], out: Path, sampler: str = "headline", label: str = "algo",
                 thresholds=(0.5, 0.8, 0.9), title: str = "", methods=(), metrics=()) -> Path:
    """Find run dirs under `dirs`, write every output into `out`; returns the path of report.md. `methods` keeps
    only those labels (in that order of preference: none = all); `metrics` adds one figure per logged metric."""
    paths = find_run_dirs([Path(d) for d in dirs])
    if not paths:
        raise ValueError(f"no run directories (config.json with algo_name + metrics.csv) under {list(map(str, dirs))}")
    runs = [load_run(p, sampler, label) for p in paths]
    if methods:
        unknown = sorted(set(methods) - {r.method for r in runs})
        if unknown:
            raise ValueError(f"--methods {unknown}: no such method under {list(map(str, dirs))} "
                             f"(found: {sorted({r.method for r in runs})})")
        runs = [r for r in runs if r.method in methods]
    for r in (r for r in runs if not len(r.steps)):
        print(f"warning: {r.path}: no '{r.metric}' values in metrics.csv", file=sys.stderr)
    groups = group_runs(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = [summarize(k, v, thresholds) for k, v in groups.items()]
    through = [throughput(k, v) for k, v in groups.items()]
    curve_rows = [{"task": t, "method": m, "env_steps": float(s), "n": c.n, "mean": float(mu),
                   "ci95_low": float(mu - h), "ci95_high": float(mu + h)}
                  for (t, m), runs_ in groups.items() for c in [curve(runs_)]
                  for s, mu, h in zip(c.steps, c.mean, c.half)]
    for name, rows in (("summary.csv", summary), ("throughput.csv", through), ("curves.csv", curve_rows),
                       ("runs.csv", _runs_rows(groups, thresholds))):
        _write_csv(out / name, rows)
    plot_curves(groups, out / "curves.png", title)
    extra = [plot_metric(groups, key, out / f"{key.replace('/', '_').replace(':', '_over_')}.png") for key in metrics]
    curve_metrics = ", ".join(sorted({r.metric for r in runs}))
    note = provenance_note(runs)
    if note:
        print(f"flowft report: {note}", file=sys.stderr)
    md = [f"# {title or 'flowft report'}", "",
          f"{len(runs)} run directories under {', '.join(shown(Path(d)) for d in dirs)} (listed in `runs.csv`; `summary.csv` "
          f"names the runs behind every row). Metric: {curve_metrics} (sampler: {sampler}). Mean over seeds with a 95 % "
          "Student-t interval (mean ± t(0.975, n−1)·s/√n). Steps to p: first eval after step 0 with success ≥ p there and at "
          "the next eval (the last eval counts alone), mean over the seeds that reached it (k/n); — if none. `start` = success at env step 0 (the BC policy).", "",
          *([note, ""] if note else []), "![learning curves](curves.png)", "", markdown_tables(summary, through, thresholds),
          *[f"\n![{k}]({p.name})" for k, p in zip(metrics, extra)]]
    (out / "report.md").write_text("\n".join(md))
    inputs = {"dirs": [shown(Path(d)) for d in dirs], "sampler": sampler, "label": label,
              "thresholds": list(thresholds), "title": title, "methods": list(methods), "metrics": list(metrics)}
    (out / "report.json").write_text(json.dumps(inputs, indent=1) + "\n")
    return out / "report.md"
