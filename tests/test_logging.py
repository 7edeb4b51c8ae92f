"""Optional loggers: TensorBoard event files and W&B offline mode (no network); CSV is always written."""

import csv
import os

import pytest

from flowft.utils.logging import Logger, LogConfig


def test_csv_grows_columns_and_resume_truncates(tmp_path):
    log = Logger(tmp_path, LogConfig(), {})
    log.log({"train/a": 1.0}, 100, 1)
    log.log({"train/a": 2.0, "eval/success": 0.5}, 200, 2)
    log.log({"train/a": 3.0}, 300, 3)
    log.close()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["env_steps"] for r in rows] == ["100", "200", "300"] and rows[1]["eval/success"] == "0.5"
    again = Logger(tmp_path, LogConfig(), {}, resume_step=200)  # resumed from the checkpoint at 200
    again.log({"train/a": 9.0}, 300, 3)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["env_steps"] for r in rows] == ["100", "200", "300"] and rows[2]["train/a"] == "9.0"


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    log = Logger(tmp_path, LogConfig(tensorboard=True), {})
    log.log({"eval/success": 0.25}, 10, 1)
    log.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_wandb_offline_needs_no_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    log = Logger(tmp_path, LogConfig(wandb="offline"), {"seed": 0})
    log.log({"eval/success": 0.5}, 10, 1)
    log.close()
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    assert run_id and any(run_id in p.name for p in (tmp_path / "wandb").iterdir())


def test_wall_clock_column_continues_over_a_resume_and_old_files_stay_readable(tmp_path, monkeypatch):
    from flowft.utils import logging as flog

    clock = iter([100.0, 103.5, 110.0, 500.0, 502.0])  # two sittings; 390 s between them are not counted
    monkeypatch.setattr(flog.time, "monotonic", lambda: next(clock))
    log = Logger(tmp_path, LogConfig(), {})  # t0 = 100
    log.log({"train/a": 1.0}, 100, 1)  # 3.5 s in
    log.log({"train/a": 2.0}, 200, 2)  # 10 s in
    state = log.state()
    again = Logger(tmp_path, LogConfig(), {}, history=flog.read_history(tmp_path / "metrics.csv", state["rows"],
                                                                         state["keys"]))  # resumed at 500
    again.log({"train/a": 3.0}, 300, 3)  # 2 s into the second sitting
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["time/wall_s"]) for r in rows] == [3.5, 10.0, 12.0]
    # a metrics.csv written before the column existed: rows kept, the column added by the next row
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.csv").write_text("env_steps,grad_steps,train/a\r\n100,1,1.0\r\n200,2,2.0\r\n")
    monkeypatch.setattr(flog.time, "monotonic", lambda: 50.0)
    resumed = Logger(old, LogConfig(), {}, history=flog.read_history(old / "metrics.csv", 2,
                                                                       ["env_steps", "grad_steps", "train/a"]))
    resumed.log({"train/a": 3.0}, 300, 3)
    rows = list(csv.DictReader((old / "metrics.csv").open()))
    assert [(r["env_steps"], r["train/a"], r["time/wall_s"]) for r in rows] == \
        [("100", "1.0", ""), ("200", "2.0", ""), ("300", "3.0", "0.0")]
