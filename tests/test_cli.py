"""CLI: --help for every verb and preset, preset parsing, and the demos -> pretrain -> train -> eval -> plot path."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowft.cli import VERBS, main
from flowft.registry import algorithm_names


@pytest.mark.parametrize("verb", VERBS)
def test_help_for_every_verb(verb, capsys):
    argv = [verb, "--help"] if verb != "train" else ["train", "ogpo", "--help"]
    try:
        code = main(argv)
    except SystemExit as e:  # tyro exits after printing help
        code = e.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("algo", algorithm_names())
@pytest.mark.parametrize("size", ["tiny", "mid", "paper"])
def test_every_preset_parses(algo, size, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", algo, "--size", size, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    from dataclasses import fields

    from flowft.registry import get_algorithm

    knob = next(f.name for f in fields(get_algorithm(algo).cfg_cls) if f.name != "policy")
    assert f"--algo.{knob.replace('_', '-')}" in out and "--run.env-steps" in out


def test_preset_values_reach_the_config():
    from flowft.presets import train_preset

    paper = train_preset("ogpo-plus-ca", "square", "paper")
    assert paper.algo.group_size == 32 and paper.algo.critic.num_heads == 10 and paper.algo.policy.denoise_steps == 10
    assert paper.algo.actor_lr == 4.5e-5 and paper.algo.clip_eps == 0.01 and paper.algo.advantage == "conservative"
    assert paper.algo.policy.hidden == (512, 512, 512, 512) and paper.algo.bc_coeff == 1.0
    assert train_preset("ogpo", "door", "paper").algo.gamma == 0.95
    assert train_preset("ogpo-ca", "transport", "paper").algo.gamma == 0.999
    assert train_preset("ogpo", "toy", "tiny").algo.advantage == "vanilla"


def test_unknown_verb_and_algorithm(capsys):
    assert main(["nope"]) == 2
    with pytest.raises(KeyError, match="unknown algorithm"):
        main(["train", "not-an-algo"])


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "flowft", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ogpo-plus-ca" in out.stdout and "toy" in out.stdout


def test_cli_end_to_end_on_toy(tmp_path, capsys):
    demos = tmp_path / "d.hdf5"
    assert main(["demos", "--env", "toy", "--episodes", "40", "--out", str(demos)]) == 0
    assert main(["pretrain", "--task", "toy", "--demos", str(demos), "--steps", "60", "--eval-every", "60",
                 "--eval-episodes", "8", "--eval-envs", "4", "--out-dir", str(tmp_path), "--run-name", "bc"]) == 0
    bc = tmp_path / "bc" / "checkpoint"
    assert main(["train", "ogpo-ca", "--task", "toy", "--run.bc-checkpoint", str(bc), "--run.env-steps", "320",
                 "--run.start-training", "160", "--run.num-envs", "4", "--run.eval-episodes", "8",
                 "--run.eval-envs", "4", "--run.out-dir", str(tmp_path), "--run.run-name", "r",
                 "--algo.group-size", "4"]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["algo_name"] == "ogpo-ca" and cfg["algo"]["group_size"] == 4 and cfg["run"]["env_steps"] == 320
    assert (tmp_path / "r" / "plots" / "learning_curve.png").exists()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4"]) == 0
    out = capsys.readouterr().out
    assert "ode {'success'" in out and "bon {'success'" in out
    # --out collects evaluations of several checkpoints in one table, with the printed numbers
    table = tmp_path / "evals.csv"
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4", "--samplers", "ode", "sde",
                 "--out", str(table)]) == 0
    printed = capsys.readouterr().out
    assert main(["eval", str(bc.parent), "--episodes", "8", "--envs", "4", "--samplers", "sde", "--out", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [(r["sampler"], Path(r["checkpoint"]).parent.name) for r in rows] == \
        [("ode", "checkpoints"), ("sde", "checkpoints"), ("sde", "bc")]
    assert all(r["task"] == "toy" and r["episodes"] == "8" and r["seed"] == "12345" for r in rows)
    assert f"ode {{'success': {round(float(rows[0]['success']), 4)}" in printed
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4", "--out", str(foreign)]) == 2
    assert "not an eval table" in capsys.readouterr().err and foreign.read_text() == "a,b\n1,2\n"
    pytest.importorskip("imageio_ffmpeg")
    assert main(["eval", str(tmp_path / "r"), "--episodes", "4", "--envs", "2", "--samplers", "ode", "--video"]) == 0
    videos = list((tmp_path / "r").rglob("eval_ode.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    assert main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
