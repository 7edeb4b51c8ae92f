"""The fewer-demos ladder (algos/bc_ladder.py) shared by `flowft bench` and `flowft quickstart`: honest BC starts
when the demos teach BC above the clip ceiling."""

import json

import pytest

from flowft.algos.bc_ladder import pretrain_honest
from flowft.cli import main


def _fake_bc(confirmed: dict, calls: list):
    """A pretrain_one whose attempt on n successful demos (None: all) confirms confirmed[n] (ceiling 0.5)."""

    def one(run_dir, n):
        calls.append((run_dir.name, n))
        (run_dir / "checkpoint").mkdir(parents=True)
        (run_dir / "checkpoint" / "model.safetensors").write_text(f"weights of {run_dir.name}")
        return {"bc/confirmed_success": confirmed[n], "bc/over_ceiling": confirmed[n] > 0.5}

    return one


def test_ladder_descends_while_over_the_ceiling_and_keeps_the_first_honest_attempt(tmp_path):
    calls = []
    res = pretrain_honest(tmp_path / "bc", 12, (7, 5, 3), _fake_bc({None: 0.7, 7: 0.6, 5: 0.44, 3: 0.2}, calls))
    assert calls == [("bc.n12-all", None), ("bc.n7", 7), ("bc.n5", 5)]  # 3 is never tried
    assert res == {"bc/confirmed_success": 0.44, "bc/over_ceiling": False}
    assert (tmp_path / "bc" / "checkpoint" / "model.safetensors").read_text() == "weights of bc.n5"
    attempts = json.loads((tmp_path / "bc" / "attempts.json").read_text())
    assert [(a["dir"], a["successful_demos"], a["confirmed"]) for a in attempts] == [
        ("bc.n12-all", "all", 0.7), ("bc.n7", 7, 0.6), ("bc.n5", 5, 0.44)]
    assert json.loads((tmp_path / "bc" / "DONE").read_text()) == res
    assert not (tmp_path / "bc.copying").exists()


def test_ladder_keeps_the_last_attempt_when_every_one_is_over_the_ceiling(tmp_path):
    calls = []
    res = pretrain_honest(tmp_path / "bc", 12, (7, 3), _fake_bc({None: 0.9, 7: 0.8, 3: 0.6}, calls))
    assert [n for _, n in calls] == [None, 7, 3] and res["bc/over_ceiling"]
    assert (tmp_path / "bc" / "checkpoint" / "model.safetensors").read_text() == "weights of bc.n3"


def test_a_rerun_reuses_finished_attempts_and_moves_an_interrupted_one_aside(tmp_path):
    first = []
    pretrain_honest(tmp_path / "once", 12, (7,), _fake_bc({None: 0.7, 7: 0.4}, first))
    # a sitting cut short: the all-demos attempt finished, the 7-demo one has no DONE, a copy was half made
    done = tmp_path / "bc.n12-all"
    (tmp_path / "once.n12-all").rename(done)
    (tmp_path / "bc.n7").mkdir()
    (tmp_path / "bc.n7" / "metrics.csv").write_text("step\n")
    (tmp_path / "bc.copying").mkdir()
    calls = []
    res = pretrain_honest(tmp_path / "bc", 12, (7,), _fake_bc({None: 0.7, 7: 0.45}, calls))
    assert calls == [("bc.n7", 7)] and res["bc/confirmed_success"] == 0.45  # the finished attempt is not rerun
    aside = list(tmp_path.glob("bc.n7.aborted-*"))
    assert len(aside) == 1 and (aside[0] / "metrics.csv").read_text() == "step\n"  # never deleted
    assert json.loads((tmp_path / "bc" / "attempts.json").read_text())[0]["confirmed"] == 0.7


def test_an_empty_ladder_trains_once_into_the_bc_dir(tmp_path):
    calls = []
    res = pretrain_honest(tmp_path / "bc", 12, (), _fake_bc({None: 0.9}, calls))
    assert calls == [("bc", None)] and res["bc/over_ceiling"]
    assert not (tmp_path / "bc" / "attempts.json").exists() and (tmp_path / "bc" / "DONE").exists()


@pytest.mark.parametrize("ladder", [(3, 5), (5, 5), (5, 0)])
def test_a_ladder_must_be_positive_and_strictly_decreasing(tmp_path, ladder, capsys):
    with pytest.raises(ValueError, match="strictly decreasing"):
        pretrain_honest(tmp_path / "bc", 12, ladder, _fake_bc({}, []))
    assert main(["quickstart", "--task", "toy", "--fewer-demos", *map(str, ladder), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flowft quickstart: --fewer-demos must be positive and strictly")
    assert not any(tmp_path.iterdir())  # refused before any work


def test_quickstart_retrains_an_over_the_ceiling_bc_on_fewer_demos(tmp_path, monkeypatch, capsys):
    """Toy BC with the confirmed gate and a ceiling it cannot meet (clip_max 0): the quickstart's BC stage tries
    all demos, then 6 and 3 successful ones (`--fewer-demos 6 3`), each with its max_episodes, and starts from the
    last; a rerun reuses the kept BC."""
    import flowft.quickstart as qs

    real = qs.bc_preset

    def gated_toy_bc(task, size, demos, **kw):
        return real(task, size, demos, **{**kw, "steps": 120, "eval_every": 40, "eval_episodes": 8, "eval_envs": 4,
                                          "gate": "confirmed", "min_steps": 40, "plateau_window": 10,
                                          "plateau_tol": 10.0, "confirm_episodes": 8, "clip_threshold": 0.0,
                                          "clip_max": 0.0})

    monkeypatch.setattr(qs, "bc_preset", gated_toy_bc)
    args = ["quickstart", "--task", "toy", "--demo-episodes", "12", "--env-steps", "200", "--fewer-demos", "6", "3",
            "--out-dir", str(tmp_path)]
    assert main(args) == 0
    bc = tmp_path / "bc-toy-s0-tiny-n12"
    attempts = json.loads((bc / "attempts.json").read_text())
    assert [a["dir"] for a in attempts] == [f"{bc.name}.n12-all", f"{bc.name}.n6", f"{bc.name}.n3"]
    used = [json.loads((tmp_path / a["dir"] / "config.json").read_text())["bc"]["max_episodes"] for a in attempts]
    assert used == [None, 6, 3]
    run = next(p for p in tmp_path.iterdir() if p.name.startswith("ogpo-plus-ca-toy"))
    assert json.loads((run / "config.json").read_text())["run"]["bc_checkpoint"] == str(bc / "checkpoint")
    capsys.readouterr()
    assert main(args) == 0  # the rerun: the kept BC is reused, no attempt runs again
    assert "reusing the BC checkpoint" in capsys.readouterr().err
    assert len(list(tmp_path.glob(f"{bc.name}.n*"))) == 3
