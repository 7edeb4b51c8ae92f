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
