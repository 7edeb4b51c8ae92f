"""CLI: --help for every verb and preset, preset parsing, and the demos -> pretrain -> train -> eval -> plot path."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    # under torchrun the CLI leaves the process group once the run is done (a one-rank gloo group stands in for it)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        assert main(["resume", str(tmp_path / "r")]) == 0  # finished: nothing to train
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["sampler", "success", "return", "success_length", "episodes"]
    assert [line.split()[0] for line in out[1:3]] == ["ode", "bon"] and out[1].split()[-1] == "8"
    # --out collects evaluations of several checkpoints in one table, with the printed numbers
    table = tmp_path / "evals.csv"
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4", "--samplers", "ode", "sde",
                 "--out", str(table)]) == 0
    printed = capsys.readouterr().out
    # reproducible: a sampler's numbers do not depend on the samplers evaluated before it
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4", "--samplers", "sde", "--seed", "3"]) == 0
    alone = capsys.readouterr().out.splitlines()[1]
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4", "--samplers", "ode", "sde",
                 "--seed", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == alone
    # a BC checkpoint works with the default samplers (no critic: ode + sde)
    assert main(["eval", str(bc.parent), "--episodes", "8", "--envs", "4"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["ode", "sde"]
    assert main(["eval", str(bc.parent), "--episodes", "8", "--envs", "4", "--samplers", "sde", "--out", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [(r["sampler"], Path(r["checkpoint"]).parent.name) for r in rows] == \
        [("ode", "checkpoints"), ("sde", "checkpoints"), ("sde", "bc")]
    assert all(r["task"] == "toy" and r["episodes"] == "8" and r["seed"] == "12345" for r in rows)
    ode_row = next(line.split() for line in printed.splitlines() if line.startswith("ode "))
    assert float(ode_row[1]) == pytest.approx(float(rows[0]["success"]), abs=5e-4)
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main(["eval", str(tmp_path / "r"), "--episodes", "8", "--envs", "4", "--out", str(foreign)]) == 2
    assert "not an eval table" in capsys.readouterr().err and foreign.read_text() == "a,b\n1,2\n"
    pytest.importorskip("imageio_ffmpeg")
    assert main(["eval", str(tmp_path / "r"), "--episodes", "4", "--envs", "2", "--samplers", "ode", "--video"]) == 0
    videos = list((tmp_path / "r").rglob("eval_ode.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    assert videos[0].parent.parent == tmp_path / "r" / "videos"  # outside the checkpoint dirs rotation deletes
    assert main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_version_and_top_level_help_import_no_heavy_module():
    """`flowft --help` / `--version` print without importing tyro, torch or numpy (3.6 s -> 0.4 s CPU measured)."""
    code = ("import sys; from flowft.cli import main; main(['--version']); main(['--help']); "
            "print([m for m in ('tyro', 'torch', 'numpy', 'h5py') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    from flowft import __version__

    assert out.stdout.splitlines()[0] == f"flowft {__version__}" and out.stdout.splitlines()[-1] == "[]", out.stderr
    assert "usage: flowft" in out.stdout


@pytest.mark.parametrize("argv", [["pretrain", "--task", "toy", "--help"], ["train", "ogpo", "--size", "mid", "--help"],
                                  ["eval", "--help"], ["demos", "--help"], ["plot", "--help"]])
def test_help_lists_preset_options_and_cites_no_missing_file(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    if argv[0] in ("pretrain", "train"):
        assert "--task NAME" in out and "--size {tiny,mid,paper}" in out
        assert "(now: mid)" in out if "mid" in argv else "(now: toy)" in out
    assert "algorithm_reference" not in out and "scripts/" not in out and "§" not in out  # files that do not ship


def _undocumented(cls, prefix: str = "") -> list[str]:
    """Fields of a config class (nested configs included) that tyro would print without a help line."""
    import dataclasses
    import typing

    from tyro._docstrings import get_field_docstring

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _undocumented(hints[f.name], f"{prefix}{f.name}.")
        elif not get_field_docstring(cls, f.name, ()):
            out.append(prefix + f.name)
    return out


def test_every_field_of_these_verbs_has_a_help_line():
    from flowft import cli
    from flowft.algos.bc import BCConfig
    from flowft.evaluation_cli import EvalArgs
    from flowft.quickstart import QuickstartArgs
    from flowft.utils.logging import LogConfig

    cli._tyro()  # the argument classes' annotations name tyro
    classes = [LogConfig, cli.DemosArgs, cli.ResumeArgs, EvalArgs, cli.PlotArgs, cli.BenchArgs, cli.ReportArgs,
               QuickstartArgs]
    missing = {c.__name__: _undocumented(c) for c in classes}
    missing["BCConfig"] = _undocumented(BCConfig)
    assert not any(missing.values()), missing


@pytest.mark.parametrize("algo", algorithm_names())
def test_every_train_field_has_a_help_line(algo):
    import dataclasses
    import typing

    from tyro._docstrings import get_field_docstring

    from flowft.config import RunConfig, TrainConfig
    from flowft.registry import get_algorithm

    cls = TrainConfig[get_algorithm(algo).cfg_cls]  # the class `flowft train ALGO` parses (cli.cmd_train)
    origin, (algo_cls,) = typing.get_origin(cls), typing.get_args(cls)
    hints = typing.get_type_hints(origin)
    types = {f.name: algo_cls if isinstance(hints[f.name], typing.TypeVar) else hints[f.name]
             for f in dataclasses.fields(origin)}  # the generic `algo: AlgoCfgT` is the algorithm's config
    assert types["run"] is RunConfig and types["algo"] is algo_cls  # both walked below, nested configs included
    missing = []
    for name, t in types.items():
        if dataclasses.is_dataclass(t):
            missing += _undocumented(t, f"{name}.")
        elif not get_field_docstring(origin, name, ()):
            missing.append(name)
    assert not missing, missing


def test_video_extra_is_checked_before_evaluating(monkeypatch, capsys):
    import importlib.util

    from flowft import evaluation_cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a))
    monkeypatch.setattr(evaluation_cli, "resolve_checkpoint", lambda p: pytest.fail("evaluated before the check"))
    assert main(["eval", "no-such-run", "--video"]) == 2
    assert "--video needs the [video] extra (missing imageio_ffmpeg)" in capsys.readouterr().err


def test_eval_envs_capped_by_cores_on_simulator_tasks(monkeypatch):
    from types import SimpleNamespace

    from flowft import evaluation_cli

    monkeypatch.setattr(evaluation_cli, "available_cores", lambda: 2)
    assert evaluation_cli.eval_envs(SimpleNamespace(vectorization="async"), 16) == 2
    assert evaluation_cli.eval_envs(SimpleNamespace(vectorization="async"), 1) == 1
    assert evaluation_cli.eval_envs(SimpleNamespace(vectorization="sync"), 16) == 16  # in-process envs


def test_videos_go_next_to_the_checkpoints_not_inside_them(tmp_path):
    from flowft.evaluation_cli import video_dir

    assert video_dir(tmp_path / "run" / "checkpoints" / "0000004000") == tmp_path / "run" / "videos" / "0000004000"
    assert video_dir(tmp_path / "bc-run" / "checkpoint") == tmp_path / "bc-run" / "videos" / "bc"


def test_plot_says_when_runs_differ_in_length_or_share_a_seed(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from helpers import fake_run

    from flowft.utils.plotting import mean_curve, sampler_label

    a = fake_run(tmp_path / "a", "ogpo", 0, [0, 100, 200], {"eval/ode/success": [0.2, 0.5, 0.8]})
    b = fake_run(tmp_path / "b", "ogpo", 0, [0, 100], {"eval/ode/success": [0.4, 0.7]})
    assert main(["plot", str(a), str(b), "--out", str(tmp_path / "c.png")]) == 0
    err = capsys.readouterr().err
    assert "runs differ in length (s0: 200, s0: 100 env steps)" in err
    assert "2 runs but only 1 distinct seed(s) [0]" in err and (tmp_path / "c.png").stat().st_size > 1000
    x, ys = mean_curve([(np.array([0, 100, 200.]), np.array([.2, .5, .8])), (np.array([0, 100.]), np.array([.4, .7]))])
    assert x.tolist() == [0, 100] and ys.mean(0).tolist() == pytest.approx([0.3, 0.6])  # common steps, not indices
    assert sampler_label("eval/bon/success", {"algo": {"best_of_n": 1}}) == "SDE, 1 sample (best_of_n=1)"
    assert sampler_label("eval/bon/success", {"algo": {"best_of_n": 8}}) == "Best-of-8"


def test_summary_and_results_tables():
    from flowft.utils.logging import results_table, summary_table

    text = summary_table({"train/loss": 0.123456, "eval/ode/success": 0.8125, "bc/steps": 3000.0}, "final")
    assert text.splitlines() == ["final", "  eval/ode/success  0.8125", "", "  bc/steps          3000", "",
                                 "  train/loss        0.1235"]
    table = results_table({"ode": {"success": 0.5, "return": -12.25, "success_length": float("nan"), "episodes": 8.0}})
    assert table.splitlines() == ["sampler  success  return  success_length  episodes",
                                  "ode      0.5      -12.25  nan             8"]

