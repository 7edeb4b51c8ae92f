"""`flowft` command line (verb first): demos, pretrain, train, eval, resume, plot, report, bench, info, quickstart.

Presets are Python objects (flowft/presets.py). `--task` and `--size` choose the preset *before* tyro parses the
remaining flags, so every other flag overrides the chosen preset's values and `--help` shows them.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flowft import __version__
from flowft.cli_demos import DemosArgs  # noqa: F401  (flowft.cli.DemosArgs: the demos verb's options)

if TYPE_CHECKING:
    import tyro

    from flowft.config import Sampler


def _tyro():
    """tyro, imported on first use: importing it takes about a second, which `flowft --help` and `--version` never
    need. The verb argument classes below name it (and the sampler names, whose module imports it) in (string)
    annotations, so both become module globals here, before tyro resolves them."""
    global tyro, Sampler
    import tyro

    from flowft.config import Sampler

    return tyro


def parse_cli(cls, **tyro_kwargs):
    """flowft.utils.validate.parse_cli (a tyro parse validated as a whole), imported on first use like tyro."""
    from flowft.utils.validate import parse_cli as parse

    _tyro()
    return parse(cls, **tyro_kwargs)


VERBS = ("demos", "pretrain", "train", "eval", "resume", "plot", "report", "bench", "info", "quickstart")
USAGE = f"""usage: flowft {{{','.join(VERBS)}}} ...   (flowft --version: the installed version)

  demos       generate demonstrations for a task (robomimic-style HDF5)
  pretrain    behaviour cloning with the paper's clip-at-45%-success early stop
  train ALGO  finetune from a BC checkpoint (ALGO: see `flowft info`)
  eval PATH   evaluate a run dir or checkpoint (success, return, length; --video)
  resume DIR  continue a stopped or killed run from its last checkpoint (--env-steps N extends a finished one)
  plot DIRS   learning curves (success vs env steps, mean and 95% interval over seeds)
  report DIRS curves + steps-to-threshold + final success + throughput tables (PNG, CSV, report.md)
  bench SUITE run a benchmark grid (algorithms x tasks x seeds), resumable; `flowft bench --help` lists suites
  info        versions, devices, tasks, algorithms, simulator availability
  quickstart  the main job end to end: demos -> clipped BC -> OGPO -> learning curve

`flowft VERB --help` lists every option of a verb. Errors are one line, `flowft VERB: message`, exit code 2
(`--debug` or FLOWFT_DEBUG=1: the full traceback). A run stopped by SIGINT / SIGTERM writes a checkpoint and exits
130 / 143.
"""


def _prescan(argv: list[str], default_task: str) -> tuple[str, str, list[str]]:
    """Pull --task / --size out of argv (they choose the preset defaults)."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--task", "--run.task", dest="task", default=default_task)
    ap.add_argument("--size", default="tiny", choices=["tiny", "mid", "paper"])
    ns, rest = ap.parse_known_args(argv)
    return ns.task, ns.size, rest


def _preset_help(verb: str, task: str, size: str) -> str:
    """--task and --size are read before tyro parses (they pick the defaults every option below shows), so tyro
    cannot list them: this paragraph does."""
    return (f"Preset options (read first; every option below starts at the preset's value and overrides it):\n"
            f"  --task NAME              task (now: {task}); `flowft info` lists the built-in tasks\n"
            f"  --size {{tiny,mid,paper}}  learner size and budget (now: {size}): tiny 2x128 MLPs (CI, minutes on a "
            f"CPU), mid 3x256, paper 4x512 with the paper's settings (GPU). `flowft {verb} --task T --size S "
            "--help` shows that preset's values.")


def cmd_demos(argv: list[str]) -> int:
    from flowft.cli_demos import demos_main

    return demos_main(argv, _tyro())


def cmd_pretrain(argv: list[str]) -> int:
    from flowft.algos.bc import BCConfig, pretrain
    from flowft.presets import bc_preset

    task, size, rest = _prescan(argv, "toy")
    default = bc_preset(task, size, demos="")
    cfg = parse_cli(BCConfig, default=default, args=rest, prog="flowft pretrain",
                   description=f"BC pretraining with clipping.\n\n{_preset_help('pretrain', task, size)}")
    if not cfg.demos:
        raise SystemExit("flowft pretrain: --demos FILE is required (make one with `flowft demos`)")
    ckpt, res = pretrain(cfg)
    from flowft.utils.logging import summary_table

    print(summary_table(res, f"BC checkpoint: {ckpt}"))
    return 0


def cmd_train(argv: list[str]) -> int:
    from flowft.config import TrainConfig
    from flowft.presets import train_preset
    from flowft.registry import algorithm_names, get_algorithm
    from flowft.dist import trainer_class  # the single-process loop, Ray env workers, or torchrun's ranks

    if not argv or argv[0].startswith("-"):
        print(f"usage: flowft train ALGO [--task T] [--size tiny|mid|paper] [options]\nALGO: {algorithm_names()}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    algo, (task, size, rest) = argv[0], _prescan(argv[1:], "toy")
    spec = get_algorithm(algo)
    default = train_preset(algo, task, size)
    cfg = parse_cli(TrainConfig[spec.cfg_cls], default=default, args=rest, prog=f"flowft train {algo}",
                   description=f"{spec.doc}.\n\n{_preset_help(f'train {algo}', task, size)}")
    cfg = TrainConfig(algo_name=algo, run=cfg.run, algo=cfg.algo)
    trainer = trainer_class(cfg)(cfg)
    if _main_rank():
        print(f"run dir: {trainer.run_dir}", file=sys.stderr)
    return _finish(trainer.run(), trainer.run_dir)


def _finish(res: dict[str, float], run_dir) -> int:
    """The end of `flowft train/resume`: leave torchrun's process group, if one is open, through leave_group's
    barrier (a rank that closes its connections while a peer still reads the last collective aborts that peer); then
    rank 0 prints the final results."""
    from flowft.dist.ddp import leave_group
    from flowft.utils.logging import summary_table

    leave_group()
    if _main_rank():
        print(summary_table(res, f"final results of {run_dir}"))
    return 0


def _main_rank() -> bool:
    """Under torchrun only rank 0 reports (the other ranks of the data-parallel learner record nothing)."""
    return os.environ.get("RANK", "0") == "0"


@dataclass(frozen=True)
class ResumeArgs:
    run_dir: tyro.conf.Positional[str]
    """Run directory written by `flowft train`."""
    env_steps: int | None = None
    """New env-step budget: extends the run (a finished one too); at least the steps it has already done."""
    repair_metrics: bool = False
    """Continue past a damaged metrics.csv with its readable rows (a copy of the damaged file is kept)."""


def _run_config(run_dir: Path):
    """The TrainConfig of a run dir's config.json, or one line naming what is wrong with the dir or the file."""
    import json

    from flowft.config import load_train_config
    from flowft.errors import CheckpointError, FlowftError
    from flowft.train.runguard import require_run_dir
    from flowft.utils.config_io import read_json

    cfg_file = require_run_dir(run_dir)
    try:
        return load_train_config(read_json(cfg_file))
    except FlowftError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{cfg_file}: not a readable run config ({type(err).__name__}: {err})") from None


def cmd_resume(argv: list[str]) -> int:
    from dataclasses import replace

    from flowft.dist import trainer_class

    args = _tyro().cli(ResumeArgs, args=argv, prog="flowft resume",
                    description="Continue a run from its last checkpoint (a finished run: nothing to do, unless "
                                "--env-steps extends it).")
    cfg = _run_config(Path(args.run_dir))
    if args.env_steps is not None:
        cfg = replace(cfg, run=replace(cfg.run, env_steps=args.env_steps))
    res = trainer_class(cfg)(cfg, run_dir=Path(args.run_dir), resume=True, repair_metrics=args.repair_metrics).run()
    return _finish(res, args.run_dir)


def cmd_eval(argv: list[str]) -> int:
    from flowft.evaluation_cli import eval_main

    return eval_main(argv)


@dataclass(frozen=True)
class PlotArgs:
    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Training run directories (config.json + metrics.csv); runs of one task and algorithm are averaged."""
    out: str = "learning_curves.png"
    """Output PNG."""


def cmd_plot(argv: list[str]) -> int:
    from flowft.utils.plotting import plot_runs

    args = _tyro().cli(PlotArgs, args=argv, prog="flowft plot",
                       description="Learning curves (success vs env steps) of run dirs: mean and 95% interval over "
                                   "seeds, one marker per evaluation, the BC start dotted.")
    notes: list[str] = []
    try:
        out = plot_runs([Path(d) for d in args.run_dirs], Path(args.out), notes=notes)
    except ValueError as err:
        print(f"flowft plot: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"flowft plot: note: {note}", file=sys.stderr)
    print(out)
    return 0


@dataclass(frozen=True)
class BenchArgs:
    suite: tyro.conf.Positional[str]
    """Suite name (listed above)."""
    workers: int = 1
    """Cells run in parallel as subprocesses."""
    threads_per_worker: int = 1
    """torch / OpenMP threads of each worker (--run.threads of every cell)."""
    out_dir: str = "runs/bench"
    """Suite root is OUT_DIR/SUITE."""
    dry_run: bool = False
    """Print every job and its state (done / resume / new / restart / busy); run nothing, write nothing."""
    only_algos: tuple[str, ...] = ()
    """Run only these algorithms of the suite (default: all)."""
    only_tasks: tuple[str, ...] = ()
    """Run only these tasks of the suite (default: all)."""
    seeds: tuple[int, ...] = ()
    """Replace the suite's seeds."""


def cmd_bench(argv: list[str]) -> int:
    from flowft.bench.runner import run_suite
    from flowft.bench.suites import suite_table

    args = _tyro().cli(BenchArgs, args=argv, prog="flowft bench",
                    description=f"Run a benchmark suite; finished cells are skipped, interrupted ones resumed.\n\n"
                                f"suites:\n{suite_table()}")
    try:
        jobs = run_suite(args.suite, args.out_dir, args.workers, args.threads_per_worker, args.only_algos,
                         args.only_tasks, args.seeds, args.dry_run)
    except ValueError as err:
        print(f"flowft bench: {err}", file=sys.stderr)
        return 2
    return 1 if any(j.outcome in ("failed", "blocked") for j in jobs) else 0


@dataclass(frozen=True)
class ReportArgs:
    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Directories searched recursively for run dirs (config.json + metrics.csv; BC runs are ignored)."""
    out: str = "report"
    """Output directory: curves.png, curves.csv, summary.csv, runs.csv, throughput.csv, report.md."""
    sampler: Literal["headline"] | Sampler = "headline"
    """Curve metric eval/<sampler>/success; headline = each method's deployed policy (registry AlgoSpec.headline)."""
    label: Literal["algo", "parent"] = "algo"
    """Method label: the algorithm name, or the run dir's parent directory name (ablations of one algorithm)."""
    thresholds: tuple[float, ...] = (0.5, 0.8, 0.9)
    """Success levels of the steps-to-threshold table."""
    title: str = ""
    """Figure title (default: none)."""
    methods: tuple[str, ...] = ()
    """Keep only these method labels (default: every method found)."""
    metrics: tuple[str, ...] = ()
    """Extra figures: the seed-mean of these logged metrics vs env steps (e.g. train/actor/var_along_gradq;
    `A:B` = the ratio A/B)."""
    verify: bool = False
    """Treat the positional directories as existing report dirs: rebuild each from its report.json (the inputs it
    was made with; paths relative to the working directory) and compare the CSVs. Exit 1 if any differs."""


def _verify_reports(dirs: tuple[str, ...]) -> int:
    from flowft.bench.verify import verify_report

    bad = 0
    for d in dirs:
        problems = verify_report(Path(d))
        bad += bool(problems)
        print(f"{d}: " + ("reproduced (every CSV identical)" if not problems else "\n  ".join(["DIFFERS", *problems])))
    return 1 if bad else 0


def cmd_report(argv: list[str]) -> int:
    from flowft.bench.report import write_report

    args = _tyro().cli(ReportArgs, args=argv, prog="flowft report",
                    description="Learning curves and tables (PNG + CSV + Markdown) from run directories.")
    try:
        if args.verify:
            return _verify_reports(args.run_dirs)
        out = write_report([Path(d) for d in args.run_dirs], Path(args.out), args.sampler, args.label,
                           args.thresholds, args.title, args.methods, args.metrics)
    except ValueError as err:
        print(f"flowft report: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


def cmd_info(argv: list[str]) -> int:
    from flowft.info import info_text

    if argv and argv[0] in ("-h", "--help"):
        print("usage: flowft info\n\nVersions, devices, tasks (with simulator availability) and algorithms.")
        return 0
    print(info_text())
    return 0


def cmd_quickstart(argv: list[str]) -> int:
    from flowft.quickstart import QuickstartArgs, quickstart

    args = parse_cli(QuickstartArgs, args=argv, prog="flowft quickstart",
                    description="demos -> clipped BC -> OGPO+CA -> learning curve, on the default task.")
    quickstart(args)
    return 0


COMMANDS = {"demos": cmd_demos, "pretrain": cmd_pretrain, "train": cmd_train, "eval": cmd_eval,
            "resume": cmd_resume, "plot": cmd_plot, "report": cmd_report, "bench": cmd_bench, "info": cmd_info,
            "quickstart": cmd_quickstart}


# what to do after an interrupt outside a training loop (a training loop checkpoints and names its resume command)
_AFTER_INTERRUPT = {"quickstart": "rerun the same `flowft quickstart` command to continue (finished stages are "
                                  "reused, the training run resumes)",
                    "train": "a run dir that was created can be continued with `flowft resume RUN_DIR`",
                    "resume": "run the same `flowft resume` again", "bench": "rerun the suite to continue"}


def _raise_terminated(*_) -> None:
    from flowft.train.runguard import Terminated

    raise Terminated()


def _one_line(verb: str, msg: str) -> str:
    msg = " ".join(str(msg).split("\n")).strip()
    return msg if msg.startswith("flowft") else f"flowft {verb}: {msg}"


def main(argv: list[str] | None = None) -> int:
    """The `flowft` entry point: run the verb, then flush stdout here, where a reader that went away early
    (`flowft --help | head -1`) can be handled, instead of at interpreter exit, which prints a BrokenPipeError."""
    try:
        try:
            return _run(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The Python docs' recipe for SIGPIPE: point stdout at devnull so the exit flush of the unwritten rest does not
    fail again, and exit 141 (128 + SIGPIPE) like a Unix tool the pipe's reader stopped listening to."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (an in-process capture): nothing to redirect
        pass
    return 141


def _run(argv: list[str] | None) -> int:
    import os
    import signal
    import threading

    from flowft.errors import FlowftError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FLOWFT_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        from flowft.utils.logging import one_line_warnings

        one_line_warnings()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"flowft {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"flowft: unknown verb '{argv[0]}'\n\n{USAGE}", file=sys.stderr)
        return 2
    verb = argv[0]
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (plain `kill`, SLURM preemption) unwinds like Ctrl-C, so env worker processes are closed; a
        # training loop replaces both handlers while it runs and checkpoints first (train/runguard.py)
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return COMMANDS[verb](argv[1:])
    except FlowftError as err:
        if debug:
            raise
        print(_one_line(verb, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated), outside a training loop
        if debug:
            raise
        from flowft.train.runguard import Terminated  # here, not above: it imports numpy, which --help never needs

        name, code = ("SIGTERM", 143) if isinstance(err, Terminated) else ("SIGINT", 130)
        print(f"flowft {verb}: interrupted by {name}; {_AFTER_INTERRUPT.get(verb, 'nothing was saved')}",
              file=sys.stderr)
        return code
    except SystemExit as err:  # deliberate `raise SystemExit("message")`: one line, exit 2; exit codes pass
        if debug or err.code is None or isinstance(err.code, int):
            raise
        print(_one_line(verb, err.code), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
