"""`flowft eval`: evaluate any checkpoint with the same `evaluate()` used during training."""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from flowft.config import Sampler
from flowft.deploy import act_functions, resolve_checkpoint
from flowft.envs.make import make_vec_env
from flowft.errors import ConfigError
from flowft.registry import get_task
from flowft.train.evaluate import evaluate, record_videos
from flowft.utils.checkpoint import read_checkpoint_json
from flowft.utils.logging import console, results_table
from flowft.utils.seeding import seed_everything
from flowft.utils.video import check_video_extra
from flowft.utils.validate import INT_NONNEG, INT_POS, check, parse_cli, rules


@dataclass(frozen=True)
class EvalArgs:
    path: tyro.conf.Positional[str]
    """Run dir (its newest checkpoint), a checkpoint dir, or a BC run / checkpoint dir."""
    samplers: tuple[Sampler, ...] = ()
    """Samplers to evaluate. ode: the deterministic policy (from a drawn start noise); ode_zero: the same from
    x0 = 0; sde: one stochastic sample; bon: Best-of-N scored by the
    critic (finetuned checkpoints only). Empty: the samplers the run evaluated with during training, or ode + sde
    for a BC checkpoint."""
    episodes: int = 64
    """Episodes per sampler."""
    envs: int = 16
    """Parallel envs; simulator tasks (one process per env) are capped at the available CPU cores."""
    seed: int = 12345
    """Reset seeds and sampler noise. The same --seed, --envs and --threads give the same numbers, except on robosuite
    tasks so far (their envs draw object sizes unseeded when built; run_eval's doc)."""
    threads: int = 1
    """torch threads for acting (1: the same numbers on any machine; the envs run in their own processes)."""
    device: str = "cpu"
    """torch device of the policy (cpu, cuda, cuda:1, ...)."""
    video: bool = False
    """Write an mp4 of env 0's first episode per sampler (needs the [video] extra and an offscreen renderer; checked
    before evaluating) to RUN/videos/STEP/eval_SAMPLER.mp4 (a BC run: RUN/videos/bc), outside the checkpoint dirs
    that rotation deletes."""
    video_dir: str = ""
    """Write the videos here instead."""
    out: str = ""
    """Also append one row per sampler to this CSV (created with a header if new; an existing file must have the
    same columns), so several checkpoints' evaluations collect in one table."""

    def __post_init__(self):
        check(self, rules({("episodes", "envs", "threads"): INT_POS, "seed": INT_NONNEG}))


def eval_main(argv: list[str]) -> int:
    """`flowft eval` (cli.py dispatches here)."""
    args = parse_cli(EvalArgs, args=argv, prog="flowft eval",
                     description="Evaluate a checkpoint with the evaluation used during training (progress bar on a "
                                 "terminal).")
    try:
        if args.out:
            check_eval_csv(Path(args.out))  # refuse a foreign CSV before spending the evaluation
        results = run_eval(args.path, args.samplers, args.episodes, args.envs, args.seed, args.device, args.video,
                           args.threads, args.video_dir)
    except ValueError as err:
        print(f"flowft eval: {err}", file=sys.stderr)
        return 2
    print(results_table(results))
    if args.out:
        append_eval_csv(Path(args.out), args.path, args.seed, results)
        print(f"appended {len(results)} rows to {args.out}")
    return 0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def eval_envs(task, envs: int) -> int:
    """Simulator tasks run one process per env: more processes than cores only time-share them (16 on 2 cores made
    `flowft eval` crawl), so they are capped at the cores this process may use. In-process (sync) tasks keep `envs`."""
    if task.vectorization != "async":
        return envs
    return max(1, min(envs, available_cores()))


def default_samplers(ckpt: Path) -> tuple[str, ...]:
    """The samplers the training run evaluated with (its --run.eval-samplers; ode + the method's deployed sampler
    if not recorded); ode + sde for a BC checkpoint, which has no critic and so no bon."""
    cfg = read_checkpoint_json(ckpt / "config.json")
    if cfg.get("kind") == "bc":
        return ("ode", "sde")
    if cfg.get("run", {}).get("eval_samplers"):
        return tuple(cfg["run"]["eval_samplers"])
    from flowft.registry import get_algorithm

    return tuple(dict.fromkeys(("ode", get_algorithm(cfg["algo_name"]).headline)))


def video_dir(ckpt: Path) -> Path:
    """Where `--video` writes: next to the checkpoints, not inside one (checkpoint rotation deletes those dirs).
    RUN/checkpoints/STEP -> RUN/videos/STEP; a BC run's RUN/checkpoint -> RUN/videos/bc."""
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "videos" / ckpt.name
    return ckpt.parent / "videos" / ("bc" if ckpt.name == "checkpoint" else ckpt.name)


def run_eval(path: str, samplers, episodes: int, envs: int, seed: int, device: str, video: bool,
             threads: int | None = 1, video_out: str = "") -> dict:
    """{sampler: evaluate()} for a run dir or checkpoint. Reproducible for a fixed (seed, envs, threads) on tasks
    whose envs are deterministic given reset(seed): each sampler starts from fresh RNGs seeded by `seed` (so its
    numbers do not depend on which samplers ran before it) on the same reset seeds; the env count fixes which
    episodes each env plays, so a different --envs (or a cap to fewer cores) gives a different sample of episodes.
    robosuite tasks included: a seeded reset rebuilds the model (Lift's cube size) from the reset seed
    (envs/robosuite_tasks.py), so an episode depends on its seed alone, not on the env build."""
    if video:
        check_video_extra()
    if threads:
        torch.set_num_threads(threads)
    ckpt = resolve_checkpoint(path)
    cfg = read_checkpoint_json(ckpt / "config.json")
    dev = torch.device(device)
    fns, _, _ = act_functions(ckpt, dev, seed)
    samplers = tuple(samplers) or default_samplers(ckpt)
    missing = [s for s in samplers if s not in fns]
    if missing:
        raise ValueError(f"{ckpt}: samplers {missing} not available for this checkpoint (available: {sorted(fns)}; "
                         "a BC checkpoint has no critic, so no `bon`)")
    task = get_task(checkpoint_task(cfg))
    n = eval_envs(task, envs)
    if n < envs:
        console(f"flowft eval: {n} env processes instead of {envs} ({available_cores()} cores); pass --envs {n} to "
                "silence this (the env count fixes which episodes each env plays)")
    venv = make_vec_env(task, n)
    out = {}
    try:
        for s in samplers:
            seed_everything(seed)
            fresh, _, _ = act_functions(ckpt, dev, seed)  # this sampler's own generator, seeded by `seed`
            out[s] = evaluate(fresh[s], venv, task.chunk_len, episodes, seed=seed, stream=0, device=dev,
                              progress=f"eval {s}")
    finally:
        venv.close()
    if video:
        record_videos(fns, samplers, task, Path(video_out) if video_out else video_dir(ckpt), seed, dev)
    return out


def checkpoint_task(cfg: dict) -> str:
    """The task name in a BC or a training checkpoint's config.json."""
    return cfg["task"] if cfg.get("kind") == "bc" else cfg["run"]["task"]


EVAL_COLUMNS = ("checkpoint", "task", "sampler", "seed", "episodes", "success", "return", "success_length", "source")


def check_eval_csv(out: Path) -> None:
    """An existing --out file must be an eval table with our columns: never append to (or clobber) another file."""
    if out.exists():
        with out.open(newline="") as f:
            header = next(csv.reader(f), None)
        if tuple(header or ()) != EVAL_COLUMNS:
            raise ValueError(f"--out {out}: exists with columns {header}, not an eval table {list(EVAL_COLUMNS)}; "
                             "choose another file")


def append_eval_csv(out: Path, path: str, seed: int, results: dict) -> None:
    """One row per sampler; `checkpoint` is the resolved checkpoint dir (its name is the env step of a training
    checkpoint), `source` the digest of the code that evaluated it (utils/provenance.py)."""
    from flowft.utils.provenance import source_digest

    import warnings

    check_eval_csv(out)
    with warnings.catch_warnings():  # the same lookup as the evaluation's, whose warnings were already shown
        warnings.simplefilter("ignore")
        ckpt = resolve_checkpoint(path)
    task, source = checkpoint_task(read_checkpoint_json(ckpt / "config.json")), source_digest()
    new = not out.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(EVAL_COLUMNS)
        for sampler, r in results.items():
            w.writerow([str(ckpt), task, sampler, seed, int(r["episodes"]), r["success"], r["return"],
                        r["success_length"], source])
