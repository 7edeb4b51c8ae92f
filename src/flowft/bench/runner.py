"""`flowft bench SUITE`: run a suite's grid as ordinary run directories, resumable across sittings.

Layout under <out>/<suite>/:
    suite.json                         the resolved suite (every cell's full TrainConfig), rewritten each sitting
    sittings.jsonl                     one line per invocation (filters, workers, outcome)
    status.csv                         last sitting's outcome per job
    <task>/demos/s<seed>-n<N>.hdf5     cached scripted demos (task.generate)
    <task>/bc/s<seed>/checkpoint       clipped BC of (task, seed): the start of every algorithm of that task and seed
    <task>/<algo>/s<seed>/             the Trainer's run dir (config.json, metrics.csv, checkpoints/, DONE)
    <task>/<algo>/s<seed>.log          the job's stdout+stderr (appended per sitting)
    <task>/<algo>/s<seed>.FAILED       present while the last attempt failed (JSON: rc, log tail)
    <task>/<algo>/s<seed>.lock         flock held by the job's process while it runs (bench/locks.py)

Cell states: done (DONE marker at the budget, or final checkpoint at the budget), diverged (DIVERGED.txt; not
retried), resume (checkpoints but not done -> Trainer(cfg, run_dir, resume=True)), restart (run dir without a
checkpoint -> moved aside to <dir>.aborted-<time>, then fresh), new, busy (locked by another sitting: left alone,
bench/locks.py). Failed jobs are retried on the next sitting. Each job is a subprocess
`python -m flowft.bench.worker JOB_JSON` (bench/worker.py) with torch/OMP threads set per worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from flowft.bench.locks import is_busy
from flowft.bench.suites import Suite, get_suite, resolve_algorithms
from flowft.utils.provenance import source_digest

FINISHED = ("done", "diverged")
BUSY_RC = 75  # EX_TEMPFAIL: the worker found its cell locked by another sitting
STOP_GRACE_S = 60.0  # how long an interrupted cell may take to unwind before it is killed


@dataclass
class Job:
    key: str
    """<task>/<algo or bc>/s<seed>."""
    kind: str
    """bc | train."""
    path: Path
    """Run dir (train) or BC run dir."""
    spec: dict
    """What the worker needs (JSON-serialisable)."""
    deps: list[str] = field(default_factory=list)
    state: str = "new"
    outcome: str = ""
    wall_s: float = 0.0

    @property
    def log(self) -> Path:
        return self.path.with_name(self.path.name + ".log")

    @property
    def failed_marker(self) -> Path:
        return self.path.with_name(self.path.name + ".FAILED")


# ------------------------------------------------------------------------------------------------ cell state
def checkpoint_step(run_dir: Path) -> int | None:
    """Env step of the newest complete checkpoint, None when there is none."""
    from flowft.utils.checkpoint import latest_checkpoint

    try:
        return int(latest_checkpoint(run_dir).name.split(".")[0])  # a `<step>.old` left by a crash counts
    except (FileNotFoundError, ValueError):
        return None


def cell_state(run_dir: Path, env_steps: int) -> str:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "new"
    done = run_dir / "DONE"
    if done.exists() and json.loads(done.read_text()).get("env_steps", 0) >= env_steps:
        return "done"
    if (run_dir / "DIVERGED.txt").exists():
        return "diverged"
    step = checkpoint_step(run_dir)
    if step is None:
        return "restart"
    return "done" if step >= env_steps else "resume"


def bc_state(bc_dir: Path) -> str:
    if (Path(bc_dir) / "checkpoint" / "model.safetensors").exists():
        return "done"
    return "restart" if Path(bc_dir).exists() else "new"


def write_done(run_dir: Path, env_steps: int, **info) -> None:
    tmp = Path(run_dir) / "DONE.tmp"
    tmp.write_text(json.dumps({"env_steps": env_steps, "finished": time.strftime("%F %T"), **info}, indent=1,
                              default=float))
    tmp.replace(Path(run_dir) / "DONE")


# --------------------------------------------------------------------------------------------------- planning
def cell_config(spec: dict):
    """The TrainConfig of a cell: the algorithm's preset with only the suite's budget fields overridden."""
    from flowft.presets import train_preset

    run_dir = Path(spec["run_dir"])
    over = dict(spec["overrides"])
    if "eval_samplers" in over:
        over["eval_samplers"] = tuple(over["eval_samplers"])
    cfg = train_preset(spec["algo"], spec["task"], spec["size"], bc_checkpoint=spec["bc_checkpoint"],
                       seed=spec["seed"], out_dir=str(run_dir.parent), run_name=run_dir.name,
                       threads=spec["threads"], **over)
    return replace(cfg, algo=replace_path(cfg.algo, spec.get("algo_overrides", [])))


def replace_path(cfg, overrides) -> object:
    """Frozen dataclass `cfg` with dotted fields replaced: [("policy.sde.correction", "none")] -> new cfg."""
    for path, value in overrides:
        head, _, rest = path.partition(".")
        if not is_dataclass(cfg) or head not in {f.name for f in fields(cfg)}:
            raise ValueError(f"variant override '{path}': no field '{head}' in {type(cfg).__name__}")
        cfg = replace(cfg, **{head: replace_path(getattr(cfg, head), [(rest, value)]) if rest else value})
    return cfg


def _validate(suite: Suite, only_algos, only_tasks, seeds, workers: int, threads: int) -> tuple[list, list, list]:
    from flowft.registry import get_task

    if workers < 1 or threads < 1:
        raise ValueError(f"--workers ({workers}) and --threads-per-worker ({threads}) must be >= 1")
    algos, _ = resolve_algorithms(suite)
    if only_algos:
        every = {a for t in suite.tasks for a in suite.algorithms_for(t, algos)}
        unknown = [a for a in only_algos if a not in every and a not in suite.algorithms]
        if unknown:
            raise ValueError(f"--only-algos {unknown}: not in suite '{suite.name}' (its algorithms: {sorted(every)})")
    tasks = list(suite.tasks)
    if only_tasks:
        unknown = [t for t in only_tasks if t not in tasks]
        if unknown:
            raise ValueError(f"--only-tasks {unknown}: not in suite '{suite.name}' (its tasks: {tasks})")
        tasks = [t for t in tasks if t in only_tasks]
    for t in tasks:
        try:
            get_task(t)
        except KeyError as err:
            raise ValueError(f"suite '{suite.name}': {err.args[0]}") from None
    return algos, tasks, list(seeds) if seeds else list(suite.seeds)


def plan(suite: Suite, out_dir: Path, only_algos=(), only_tasks=(), seeds=(), workers: int = 1,
         threads: int = 1) -> list[Job]:
    """Every BC stage and cell of the (filtered) grid, with its current state; BC jobs first."""
    algos, tasks, seeds = _validate(suite, only_algos, only_tasks, seeds, workers, threads)
    keep = lambda task: [a for a in suite.algorithms_for(task, algos) if not only_algos or a in only_algos]  # noqa: E731
    root, jobs = Path(out_dir) / suite.name, []
    for task in tasks:
        bc = suite.bc_for(task)
        for seed in seeds:
            bc_dir = root / task / "bc" / f"s{seed}"
            spec = {"kind": "bc", "task": task, "seed": seed, "size": suite.size, "threads": threads,
                    "bc_dir": str(bc_dir), "demos": str(root / task / "demos" / _demo_name(seed, bc)),
                    "demo_episodes": bc.demo_episodes, "demo_noise": bc.demo_noise, "demo_style": bc.demo_style,
                    "overrides": bc.overrides(), **({"fewer_demos": list(bc.fewer_demos)} if bc.fewer_demos else {})}
            state = "busy" if is_busy(bc_dir) else bc_state(bc_dir)
            jobs.append(Job(f"{task}/bc/s{seed}", "bc", bc_dir, spec, state=state))
    for task in tasks:
        for seed in seeds:
            for label in keep(task):
                spec = train_spec(suite, root, task, label, seed, threads)
                run_dir, steps = Path(spec["run_dir"]), cell_config(spec).run.env_steps
                state = "busy" if is_busy(run_dir) else cell_state(run_dir, steps)
                jobs.append(Job(f"{task}/{label}/s{seed}", "train", run_dir, spec, deps=[f"{task}/bc/s{seed}"],
                                state=state))
    return jobs


def _demo_name(seed: int, bc) -> str:
    """Cached demo file of one (task, seed); styles other than the clean expert are named in it."""
    style = "" if bc.demo_style == "clean" else f"-{bc.demo_style or 'default'}"
    return f"s{seed}-n{bc.demo_episodes}{style}.hdf5"


def train_spec(suite: Suite, root: Path, task: str, label: str, seed: int, threads: int | None) -> dict:
    """The worker's description of one cell: preset names + the suite's budget overrides + paths. `label` is an
    algorithm name or the label of one of the suite's variants."""
    from flowft.registry import get_algorithm

    variant = suite.variants.get(label)
    algo = variant.algo if variant else label
    over = {**suite.budget_for(task).overrides(), "plot": suite.plot}
    if suite.headline_only:
        over["eval_samplers"] = [get_algorithm(algo).headline]
    return {"kind": "train", "task": task, "seed": seed, "algo": algo, "size": suite.size, "threads": threads,
            "algo_overrides": [list(o) for o in variant.overrides] if variant else [],
            "run_dir": str(root / task / label / f"s{seed}"), "overrides": over,
            "bc_checkpoint": str(root / task / "bc" / f"s{seed}" / "checkpoint")}


def resolved_suite(suite: Suite, threads: int | None = None) -> dict:
    """The suite as run: its fields plus every (task, algo) cell's full TrainConfig (seed 0) and BC config."""
    from flowft import __version__
    from flowft.presets import bc_preset
    from flowft.utils.config_io import to_dict

    algos, missing = resolve_algorithms(suite, warn=False)
    out = {"suite": asdict(suite), "flowft_version": __version__, "algorithms": algos,
           "skipped_unregistered": missing, "cells": {}, "bc": {}}
    for task in suite.tasks:
        stage = suite.bc_for(task)
        out["bc"][task] = to_dict(bc_preset(task, suite.size, "<demos>", **stage.overrides()))
        for label in algos:
            spec = train_spec(suite, Path("."), task, label, 0, threads)
            out["cells"][f"{task}/{label}"] = {"algo_name": spec["algo"], **to_dict(cell_config(spec))}
    return out


# ---------------------------------------------------------------------------------------------- execution
def _launch(job: Job) -> subprocess.Popen:
    threads = str(job.spec["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "flowft.bench.worker", json.dumps(job.spec)]
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with job.log.open("a") as f:
        f.write(f"\n===== {time.strftime('%F %T')} {job.key} (state: {job.state})\n$ {' '.join(cmd)}\n")
    log = job.log.open("a")
    # own session: on an interrupt we stop the cell (and its env worker processes) ourselves, see stop_cells()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    return proc


def stop_cells(procs: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> list[int]:
    """SIGTERM each cell (it unwinds and closes its env workers), wait up to `grace_s` in all, then SIGKILL the
    process group of any cell still alive (a cell stuck in a simulator step under load did not unwind in 25 s).
    Returns the exit codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the cell leads its own session: this reaches its env workers
            except ProcessLookupError:
                pass
            proc.wait()
    return [proc.returncode for proc in procs]


def _record(job: Job, rc: int) -> None:
    if rc == 0:
        job.outcome = "ok"
        job.failed_marker.unlink(missing_ok=True)
        return
    if rc == BUSY_RC:  # locked by another sitting after plan() looked: not a failure of this cell
        job.outcome = "busy"
        return
    job.outcome = "diverged" if (job.path / "DIVERGED.txt").exists() else "failed"
    tail = job.log.read_text(errors="replace").splitlines()[-25:] if job.log.exists() else []
    job.failed_marker.write_text(json.dumps({"rc": rc, "outcome": job.outcome, "when": time.strftime("%F %T"),
                                             "log": str(job.log), "tail": tail}, indent=1))


def _block(job: Job, dep: str) -> None:
    job.outcome = "blocked"
    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.failed_marker.write_text(json.dumps({"rc": None, "outcome": "blocked", "when": time.strftime("%F %T"),
                                             "reason": f"dependency {dep} failed"}, indent=1))


def execute(jobs: list[Job], workers: int, poll_s: float = 0.5, desc: str = "bench") -> list[Job]:
    """Run every unfinished job (deps first) with at most `workers` subprocesses; never stops on a failure."""
    from tqdm import tqdm

    for j in jobs:  # busy: another sitting runs it, leave it alone
        j.outcome = "skipped" if j.state in FINISHED else "busy" if j.state == "busy" else ""
    pending = [j for j in jobs if not j.outcome]
    status = {j.key: "ok" if j.outcome == "skipped" else j.outcome for j in jobs}
    running: dict[str, tuple[subprocess.Popen, Job, float]] = {}
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, unit="job", dynamic_ncols=True)
    try:
        while pending or running:
            for key, (proc, job, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                job.wall_s = time.perf_counter() - t0
                _record(job, proc.returncode)
                status[key] = job.outcome
                del running[key]
                bar.update(1)
                bar.write(f"{job.outcome:>8}  {key}  ({job.wall_s:.0f} s)" +
                          ("" if job.outcome == "ok" else f"  log: {job.log}"))
            for job in list(pending):
                bad = [d for d in job.deps if status.get(d) in ("failed", "blocked", "diverged")]
                if bad:
                    _block(job, bad[0])
                    status[job.key] = "blocked"
                    pending.remove(job)
                    bar.update(1)
                    bar.write(f" blocked  {job.key}  ({bad[0]} failed)")
                elif any(status.get(d) == "busy" for d in job.deps):  # its BC is being made elsewhere
                    job.outcome = "waiting"
                    pending.remove(job)
                    bar.update(1)
                    bar.write(f" waiting  {job.key}  (its dependency runs in another sitting; run this again later)")
                elif len(running) < workers and all(status.get(d) == "ok" for d in job.deps):
                    running[job.key] = (_launch(job), job, time.perf_counter())
                    pending.remove(job)
            if pending and not running:
                raise RuntimeError(f"bench: jobs {[j.key for j in pending]} wait on dependencies outside the plan")
            time.sleep(poll_s if running else 0)
    except BaseException:
        cells = list(running.values())  # our own children only
        for (proc, job, _), rc in zip(cells, stop_cells([c[0] for c in cells])):
            if rc == 0:  # finished just before the interruption
                _record(job, 0)
            else:
                job.outcome = "interrupted"
        for job in pending:
            job.outcome = "not run"
        raise
    finally:
        bar.close()
    return jobs


def _write_status(root: Path, jobs: list[Job]) -> None:
    import csv

    with (root / "status.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "kind", "state_before", "outcome", "wall_s", "path", "log"])
        for j in jobs:
            w.writerow([j.key, j.kind, j.state, j.outcome, f"{j.wall_s:.1f}", j.path, j.log])


def run_suite(suite: Suite | str, out_dir: str | Path = "runs/bench", workers: int = 1, threads: int = 1,
              only_algos=(), only_tasks=(), seeds=(), dry_run: bool = False, poll_s: float = 0.5) -> list[Job]:
    suite = get_suite(suite) if isinstance(suite, str) else suite
    jobs = plan(suite, Path(out_dir), only_algos, only_tasks, seeds, workers, threads)
    root = Path(out_dir) / suite.name
    if dry_run:
        for j in jobs:
            extra = f" @ {checkpoint_step(j.path)} env steps" if j.state == "resume" else ""
            retry = " (failed before: retry)" if j.failed_marker.exists() else ""
            print(f"{j.state:>8}{extra}  {j.key}  -> {j.path}{retry}")
        return jobs
    root.mkdir(parents=True, exist_ok=True)
    (root / "suite.json").write_text(json.dumps(resolved_suite(suite, threads), indent=1, default=str))
    for j in jobs:  # finished by its final checkpoint but killed before the DONE marker
        if j.kind == "train" and j.state == "done" and not (j.path / "DONE").exists():
            write_done(j.path, checkpoint_step(j.path), note="inferred from the final checkpoint")
    t0 = time.time()
    # every cell is a fresh subprocess importing this install: an edit made while the grid runs changes the code
    # of every later cell (each run dir's provenance.jsonl records which code made it)
    print(f"bench {suite.name}: flowft sources {source_digest()}; keep them unchanged until the grid ends (develop "
          "in another checkout or worktree)", file=sys.stderr)
    try:
        execute(jobs, workers, poll_s, desc=f"bench {suite.name}")
    finally:
        _write_status(root, jobs)
        counts = {o: sum(j.outcome == o for j in jobs) for o in sorted({j.outcome for j in jobs})}
        with (root / "sittings.jsonl").open("a") as f:
            f.write(json.dumps({"start": time.strftime("%F %T", time.localtime(t0)), "wall_s": time.time() - t0,
                                "workers": workers, "threads_per_worker": threads, "only_algos": list(only_algos),
                                "only_tasks": list(only_tasks), "seeds": list(seeds), "outcomes": counts,
                                "source": source_digest()}) + "\n")
    print(f"bench {suite.name}: {counts} in {time.time() - t0:.0f} s; status: {root / 'status.csv'}", file=sys.stderr)
    return jobs
