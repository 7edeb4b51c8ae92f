"""One bench job in its own process: `python -m flowft.bench.worker JOB_JSON` (launched by bench/runner.py).

A BC job generates (or reuses) the cached demos and pretrains the clipped BC checkpoint; a train job runs the Trainer
in the cell's run dir, resuming from its last checkpoint or restarting a dir without one (moved aside first).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from flowft.algos.bc_ladder import pretrain_honest
from flowft.bench.locks import lock_path, try_lock
from flowft.bench.runner import BUSY_RC, FINISHED, bc_state, cell_config, cell_state, write_done
from flowft.utils.rundirs import move_aside


def _worker_bc(spec: dict) -> None:
    from flowft.data.readers.hdf5 import write_demos
    from flowft.registry import get_task

    bc_dir, demos = Path(spec["bc_dir"]), Path(spec["demos"])
    if bc_state(bc_dir) == "done":
        return
    if bc_dir.exists():
        move_aside(bc_dir)
    if not demos.exists():
        task = get_task(spec["task"])
        print(f"generating {spec['demo_episodes']} demos -> {demos}", file=sys.stderr)
        style = spec.get("demo_style", "clean")  # specs written before demo styles existed: the clean expert
        write_demos(demos, task.demos(spec["demo_episodes"], spec["seed"], spec["demo_noise"], style), task.meta())
    res = pretrain_honest(bc_dir, spec["demo_episodes"], spec.get("fewer_demos", []),
                          lambda out, n: _pretrain(spec, out, n))
    print(f"BC done: {res}", file=sys.stderr)


def _pretrain(spec: dict, out: Path, max_episodes: int | None) -> dict:
    """One clipped BC run into `out`; returns its result (bc_ladder writes it to DONE)."""
    from flowft.algos.bc import pretrain
    from flowft.presets import bc_preset

    extra = {} if max_episodes is None else {"max_episodes": max_episodes}
    cfg = bc_preset(spec["task"], spec["size"], spec["demos"], seed=spec["seed"], out_dir=str(out.parent),
                    run_name=out.name, threads=spec["threads"], **spec["overrides"], **extra)
    return pretrain(cfg)[1]


def _worker_train(spec: dict) -> None:
    from flowft.train.loop import Trainer

    cfg, run_dir = cell_config(spec), Path(spec["run_dir"])
    state = cell_state(run_dir, cfg.run.env_steps)
    if state in FINISHED:
        print(f"{run_dir}: already {state}", file=sys.stderr)
        return
    if state == "restart":
        move_aside(run_dir)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, run_dir=run_dir, resume=state == "resume")
    res = trainer.run()
    write_done(run_dir, trainer.env_steps, result=res, wall_s=time.perf_counter() - t0, started_as=state)
    print(f"done: {res}", file=sys.stderr)


def worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    path = Path(spec["bc_dir"] if spec["kind"] == "bc" else spec["run_dir"])
    lock = try_lock(path)  # held until this process exits
    if lock is None:
        print(f"{path}: another bench sitting is running this job ({lock_path(path)} is locked); left alone",
              file=sys.stderr)
        return BUSY_RC
    (_worker_bc if spec["kind"] == "bc" else _worker_train)(spec)
    return 0


if __name__ == "__main__":
    # set by the job process only (not by worker_main, which tests call in-process)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind so env worker processes are closed
    sys.exit(worker_main(sys.argv[1:]))
