"""--run.video-every (issue 20): videos recorded during training, at evaluations, next to the checkpoints."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import make_bc_checkpoint, tiny_train_config

from flowft.config import RunConfig
from flowft.errors import ConfigError
from flowft.train.loop import Trainer


def test_video_every_must_fall_on_evaluations():
    with pytest.raises(ConfigError, match=r"--run.video-every must be a multiple of --run.eval-every 320"):
        RunConfig(eval_every=320, video_every=480)
    with pytest.raises(ConfigError, match=r"--run.video-every must be an integer >= 0"):
        RunConfig(video_every=-320)
    assert RunConfig(eval_every=320, video_every=640).video_every == 640


def test_missing_video_extra_is_refused_before_the_run_dir_exists(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imageio" else real(name, *a))
    cfg = tiny_train_config(tmp_path / "no-bc", tmp_path, run_name="v", eval_every=320, video_every=320)
    with pytest.raises(ConfigError, match=r"--run.video-every needs the \[video\] extra \(missing imageio\)"):
        Trainer(cfg)
    assert not (tmp_path / "v").exists()


def test_training_records_a_video_at_the_chosen_evaluations_and_the_budget(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    bc = make_bc_checkpoint(tmp_path / "bc", steps=100)
    cfg = tiny_train_config(bc, tmp_path, run_name="v", env_steps=960, eval_every=320, video_every=640)
    Trainer(cfg).run()
    videos = sorted(p.relative_to(tmp_path / "v").as_posix() for p in (tmp_path / "v").rglob("*.mp4"))
    # at 640 (every 640) and at the budget 960; not at the evaluations at 0 and 320; the first eval sampler
    assert videos == ["videos/0000000640/eval_ode.mp4", "videos/0000000960/eval_ode.mp4"]
    assert all((tmp_path / "v" / v).stat().st_size > 1000 for v in videos)
