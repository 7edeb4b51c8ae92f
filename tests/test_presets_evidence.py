"""The simulator presets are the configurations of the published runs that justify them (docs/algorithm.md, "CPU
recipe"): building a preset today gives the learner settings and run budget recorded in that run's config.json."""

import json
from pathlib import Path

import pytest

from flowft.presets import train_preset
from flowft.quickstart import QUICKSTART
from flowft.utils.config_io import to_dict

RUNS = Path(__file__).resolve().parents[1] / "docs" / "results" / "runs" / "operator-sweep"
# the run settings that make up a preset (the rest are the harness's: paths, seed, logging, evaluators)
RUN_KEYS = ("env_steps", "start_training", "utd", "num_envs", "eval_every", "eval_episodes", "eval_envs", "threads")
# algorithm fields added after a published run, at the value that reproduces the behaviour it ran with
# fields newer than the runs: their defaults
ADDED_LATER = {"actor_every": 1, "lr_restart": True, "bon_distill_coeff": 0.0, "ratio_stats": "live",
               "policy.obs_clip": None, "critic.obs_clip": None}


def _configs(algo: str, task: str, run: str, **overrides) -> tuple[dict, dict]:
    """(the published run's config.json, today's preset with `overrides` (run fields) as the training loop writes
    it to config.json)."""
    return (json.loads((RUNS / run / "config.json").read_text()),
            to_dict(train_preset(algo, task, "tiny", **overrides)))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("algo, task, run", [
    ("ogpo-plus", "door", "door/ogpo-plus-fast-utd1/s0"),  # door: fast actor steps, UTD 1, one SDE sample (section 9)
    # Can: the authors' actor steps, EMA 0.005, Best-of-8 from 2000, Best-of-N distillation at coefficient 3
    ("ogpo-plus-ca", "can", "can/preset-distill3/s0"),
])
def test_the_preset_is_the_published_runs_configuration(algo, task, run):
    recorded, preset = _configs(algo, task, run)
    assert recorded["algo_name"] == algo and recorded["run"]["task"] == task
    want, got = _flat(recorded["algo"]), _flat(preset["algo"])
    later = {k: got.pop(k) for k in ADDED_LATER if k not in want}
    assert later == {k: ADDED_LATER[k] for k in later}
    assert got == want
    assert {k: preset["run"][k] for k in RUN_KEYS} == {k: recorded["run"][k] for k in RUN_KEYS}


@pytest.mark.parametrize("algo, task, run, fields, utd", [
    # the published door preset cells (OGPO+CA, 2026-11-28): the authors' actor lr at UTD 0.25
    ("ogpo-plus-ca", "door", "door/preset/s1", {"actor_lr", "actor_lr_floor", "lr_warmup", "lr_cycle"}, (0.25, 1.0)),
    # the Lift and Can preset cells before Best-of-8 acting (one SDE sample throughout, so no distillation either)
    ("ogpo-plus-ca", "lift", "lift/preset-rerun/s1", {"best_of_n", "bon_after_updates", "bon_distill_coeff"},
     (0.25, 0.25)),
    ("ogpo-plus-ca", "can", "can/authors-actor/s0", {"best_of_n", "bon_after_updates", "bon_distill_coeff"},
     (0.25, 0.25)),
    # the Can preset before Best-of-N distillation (its control cells)
    ("ogpo-plus-ca", "can", "can/preset/s1", {"bon_distill_coeff"}, (0.25, 0.25)),
    # and with distillation at coefficient 1 (the coefficient-3 rows' comparison)
    ("ogpo-plus-ca", "can", "can/preset-distill/s0", {"bon_distill_coeff"}, (0.25, 0.25)),
    # the Lift preset before Best-of-N distillation: the sweep's fast actor steps, M = 10, Best-of-8 from 2000
    ("ogpo-plus-ca", "lift", "lift/preset-bon/s2", {"bon_distill_coeff"}, (0.25, 0.25)),
])
def test_earlier_presets_differ_where_the_section_9_runs_say(algo, task, run, fields, utd):
    """A preset that changed since a published cell differs from that cell's config in exactly the fields the
    newer evidence is about."""
    recorded, preset = _configs(algo, task, run)
    want, got = _flat(recorded["algo"]), _flat(preset["algo"])
    want = {**{k: v for k, v in ADDED_LATER.items() if k not in want}, **want}  # a newer field: its default then
    assert {k for k in want if got[k] != want[k]} == fields
    assert (recorded["run"]["utd"], preset["run"]["utd"]) == utd


@pytest.mark.parametrize("run, fields", [
    ("lift/quickstart-distill3/s0", set()),  # the quickstart today: the Lift preset with distillation at 3
    ("lift/quickstart-distill3/s1", set()),  # `flowft quickstart --seed 1` itself, with today's BC gate
    ("lift/quickstart-rerun/s0", {"bon_distill_coeff"}),  # its control, same BC: the quickstart before distillation
    ("lift/quickstart-distill0/s1", {"bon_distill_coeff"}),  # the seed-1 control, from the seed-1 quickstart's BC
    ("lift/quickstart-distill0/s2", {"bon_distill_coeff"}),  # the seed-2 control, from the seed-2 quickstart's BC
])
def test_the_quickstart_is_the_published_quickstart_runs_configuration(run, fields):
    """`flowft quickstart` (Lift, seed 0) trains with the Lift preset at the quickstart's budget: the configuration
    of the published seed-0 runs, except where a later change is about (ADDED_LATER: defaults of newer fields)."""
    recorded, preset = _configs("ogpo-plus-ca", "lift", run, **QUICKSTART["lift"]["run"])
    want, got = _flat(recorded["algo"]), _flat(preset["algo"])
    want = {**{k: v for k, v in ADDED_LATER.items() if k not in want}, **want}  # a newer field: its default then
    assert {k for k in want if got[k] != want[k]} == fields
    assert {k: preset["run"][k] for k in RUN_KEYS} == {k: recorded["run"][k] for k in RUN_KEYS}


# the quickstart's own run settings (the 15-minute budget) on top of the preset's
QUICKSTART_KEYS = RUN_KEYS + ("eval_samplers", "start_eval_from_bc", "compile", "overlap_updates", "precision")


@pytest.mark.parametrize("run, differs", [
    # the overlap arms (Xeon seed 0, AMD seeds 0-2): today's quickstart exactly (it overlaps since 2026-12-02)
    *((f"lift/{arm}/s{s}", set()) for arm, seeds in (("quickstart-overlap", (0,)), ("quickstart-amd-overlap", (0, 1, 2)))
      for s in seeds),
    # `flowft quickstart --seed S` before then (ODE-only evaluation, compiled update): overlap is the one difference
    *((f"lift/{arm}/s{s}", {"overlap_updates"}) for arm in ("quickstart-fast", "quickstart-amd") for s in (0, 1, 2)),
])
def test_the_quickstart_budget_is_the_published_quickstart_runs_settings(run, differs):
    """`flowft quickstart` today runs exactly the published overlap arms' learner and run settings; the published
    2026-12-02 quickstart runs made without overlap differ in that one field only."""
    recorded, preset = _configs("ogpo-plus-ca", "lift", run, **QUICKSTART["lift"]["run"])
    assert _flat(preset["algo"]) == _flat(recorded["algo"])
    assert {k for k in QUICKSTART_KEYS if preset["run"][k] != recorded["run"][k]} == differs
