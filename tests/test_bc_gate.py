"""The honest BC gate (issue 17): loss-plateau test, cheap check -> confirmation -> clip / rollback, the saved weights,
and the operator-style demo noise (no simulator: the noise process and metadata on their own)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from flowft.algos import bc as bc_mod
from flowft.algos.bc import BCConfig, pretrain
from flowft.algos.bc_gate import ClipGate, LossPlateau
from flowft.data.readers.hdf5 import read_demos, write_demos
from flowft.envs.operator_noise import (ExpertParams, OperatorLayer, OperatorNoise, OUNoise, draw_episode, episode_rng,
                                        rotvec)
from flowft.presets import bc_preset
from flowft.registry import get_task


# ------------------------------------------------------------------------------------------------ plateau
def _feed(p: LossPlateau, seq) -> LossPlateau:
    for x in seq:
        p.update(x)
    return p


def test_plateau_detector_on_hand_built_losses():
    rng = np.random.default_rng(0)
    falling = 1.0 * np.exp(-np.arange(200) / 50)  # still halving every ~35 steps
    assert not _feed(LossPlateau(50, 0.02), falling).flat()
    assert _feed(LossPlateau(50, 0.02), falling).improvement() > 0.5
    flat_noisy = 0.3 + 0.05 * rng.standard_normal(400)  # per-batch noise, no trend
    p = _feed(LossPlateau(100, 0.05), flat_noisy)
    assert p.flat() and abs(p.improvement()) < 0.05 and p.smoothed() == pytest.approx(0.3, abs=0.02)
    assert _feed(LossPlateau(10, 0.02), np.linspace(0.2, 0.3, 40)).flat()  # rising loss: nothing left to gain
    slow = np.linspace(1.0, 0.5, 400)  # 0.5 over 400 steps: ~10 % per 50-step window
    assert not _feed(LossPlateau(50, 0.02), slow).flat() and _feed(LossPlateau(50, 0.2), slow).flat()
    short = _feed(LossPlateau(50, 0.02), [0.3] * 99)  # needs two full windows
    assert not short.flat() and math.isnan(short.improvement())
    assert _feed(LossPlateau(50, 0.02), list(falling) + [0.01] * 100).flat()  # the last 100 steps decide


# ------------------------------------------------------------------------------------------------ gate logic
def _cfg(**kw) -> BCConfig:
    # the decision logic on one read per confirmation; the start read has its own tests below
    base = dict(demos="x.hdf5", plateau_window=2, plateau_tol=0.05, clip_threshold=0.45, clip_max=0.5,
                confirm_start=False)
    return BCConfig(**{**base, **kw})


class _Stub:
    """Scripted evaluator: values[(kind, step)] -> success (missing reads are 0); records every call and the weight
    value of the policy it evaluated (`_run_gate` fills the weights with the step they belong to)."""

    def __init__(self, values: dict):
        self.values, self.calls, self.read_weights, self.policy = values, [], [], None

    def __call__(self, kind: str, step: int) -> dict:
        self.calls.append((kind, step))
        self.read_weights.append(float(self.policy.weight[0, 0].detach()))
        return {"success": self.values.get((kind, step), 0.0), "return": None,
                "episodes": 16.0 if kind == "cheap" else 64.0}


def _run_gate(cfg: BCConfig, stub: _Stub, checks: list[int], losses=(0.3,) * 4):
    policy = torch.nn.Linear(2, 2)
    stub.policy = policy
    gate = ClipGate(cfg, policy, stub)
    seen = {}
    for step in checks:
        with torch.no_grad():
            policy.weight.fill_(float(step))  # weights that identify the check they were evaluated at
        for x in losses:
            gate.plateau.update(x)
        seen[step] = policy.weight.clone()
        if gate.check(step):
            break
    return gate, policy, step, seen


def test_no_evaluation_before_the_loss_flattens():
    stub = _Stub({("cheap", 10): 1.0, ("confirm", 10): 0.47})
    gate, _, last, _ = _run_gate(_cfg(), stub, [10], losses=(1.0, 0.5, 0.25, 0.12))
    assert stub.calls == [] and not gate.history[0]["flat"]
    stub = _Stub({("cheap", 10): 1.0, ("confirm", 10): 0.47})
    gate, _, _, _ = _run_gate(_cfg(min_steps=20), stub, [10])  # flat but before min_steps
    assert stub.calls == [] and gate.plateau_step is None


def test_cheap_pass_then_failed_confirmation_continues_then_clips():
    stub = _Stub({("cheap", 10): 0.6, ("confirm", 10): 0.30, ("cheap", 20): 0.2, ("cheap", 30): 0.5,
                  ("confirm", 30): 0.47})
    gate, policy, last, seen = _run_gate(_cfg(), stub, [10, 20, 30, 40])
    assert last == 30 and stub.calls == [("cheap", 10), ("confirm", 10), ("cheap", 20), ("cheap", 30), ("confirm", 30)]
    res = gate.finish(last)
    assert res["bc/steps"] == 30 and res["eval/success"] == 0.47 and res["bc/clipped"] and not res["bc/rolled_back"]
    assert res["bc/cheap_success"] == 0.5 and res["bc/confirmations"] == 2 and res["bc/plateau_step"] == 10
    assert torch.equal(policy.weight, seen[30])


def test_overshoot_rolls_back_to_the_previous_check():
    stub = _Stub({("cheap", 10): 0.3, ("cheap", 20): 0.8, ("confirm", 20): 0.70, ("confirm", 10): 0.41})
    gate, policy, last, seen = _run_gate(_cfg(), stub, [10, 20, 30])
    assert last == 20 and stub.calls[-2:] == [("confirm", 20), ("confirm", 10)]
    # the rollback's confirmation reads the previous check's weights (it once re-read the current ones and saved
    # the earlier weights unconfirmed), and the current weights are back in the policy afterwards
    assert stub.read_weights[-2:] == [20.0, 10.0] and float(policy.weight[0, 0]) == 20.0
    res = gate.finish(last)
    assert res["bc/steps"] == 10 and res["bc/trained_steps"] == 20 and res["eval/success"] == 0.41
    assert res["bc/rolled_back"] and not res["bc/clipped"] and not res["bc/over_ceiling"]
    assert torch.equal(policy.weight, seen[10])  # the saved weights are the confirmed ones


def test_overshoot_without_a_candidate_continues_and_the_cap_keeps_the_lowest():
    stub = _Stub({("cheap", 10): 0.9, ("confirm", 10): 0.80, ("cheap", 20): 0.9, ("confirm", 20): 0.65})
    gate, policy, last, seen = _run_gate(_cfg(), stub, [10, 20])
    assert last == 20  # no rollback target below the ceiling: training went on to the cap
    res = gate.finish(last)
    assert res["bc/steps"] == 20 and res["bc/over_ceiling"] and not res["bc/clipped"]
    assert torch.equal(policy.weight, seen[20])


def test_overshoot_continue_rule_and_cap_confirms_the_final_weights():
    stub = _Stub({("cheap", 10): 0.2, ("cheap", 20): 0.9, ("confirm", 20): 0.9, ("confirm", 30): 0.35})
    gate, policy, last, seen = _run_gate(_cfg(overshoot="continue"), stub, [10, 20, 30])
    assert last == 30 and ("confirm", 10) not in stub.calls
    res = gate.finish(last)  # the cap: the final weights are confirmed and are the best <= clip_max
    assert stub.calls[-1] == ("confirm", 30) and res["bc/steps"] == 30 and res["eval/success"] == 0.35
    assert not res["bc/clipped"] and not res["bc/over_ceiling"] and torch.equal(policy.weight, seen[30])


def test_the_cap_skips_final_weights_whose_cheap_check_reads_below_the_best_confirmed():
    """Lift quickstart seed 0: 7k confirmed 0.44 (under the 0.45 threshold, so BC went on), the cheap checks at 8k
    and 9k read 0.38 and 0.19. The cap does not spend 64 episodes on the 9k weights; it saves the 7k ones."""
    stub = _Stub({("cheap", 10): 0.5625, ("confirm", 10): 0.4375, ("cheap", 20): 0.375, ("cheap", 30): 0.1875,
                  ("confirm", 30): 0.34})
    gate, policy, last, seen = _run_gate(_cfg(), stub, [10, 20, 30])
    res = gate.finish(last)
    assert stub.calls == [("cheap", 10), ("confirm", 10), ("cheap", 20), ("cheap", 30)]  # no ("confirm", 30)
    assert res["bc/steps"] == 10 and res["eval/success"] == 0.4375 and res["bc/rolled_back"]
    assert res["bc/confirmations"] == 1 and not res["bc/clipped"] and torch.equal(policy.weight, seen[10])
    assert gate.history[-1]["cap_skipped"] == {"best_step": 10, "best_confirmed": 0.4375}


@pytest.mark.parametrize("cheap_at_cap, confirmed_at_cap, saved", [(0.40, 0.30, 30), (0.40, 0.15, 10),
                                                                   (0.20, 0.30, 30)])
def test_the_cap_still_confirms_final_weights_that_may_beat_the_best(cheap_at_cap, confirmed_at_cap, saved):
    """The cap confirms the final weights when their cheap read is at or above the best confirmed success <= 0.50
    (rows 1-2: confirmed 0.20 at step 10), or when no confirmed weights are <= 0.50 (row 3: 0.80 at step 10)."""
    first = 0.80 if cheap_at_cap == 0.20 else 0.20
    stub = _Stub({("cheap", 10): 0.5, ("confirm", 10): first, ("cheap", 30): cheap_at_cap,
                  ("confirm", 30): confirmed_at_cap})
    gate, policy, last, seen = _run_gate(_cfg(overshoot="continue"), stub, [10, 20, 30])
    res = gate.finish(last)
    assert stub.calls[-1] == ("confirm", 30) and res["bc/confirmations"] == 2
    assert res["bc/steps"] == saved and torch.equal(policy.weight, seen[saved])
    assert "cap_skipped" not in gate.history[-1]


def test_the_start_read_is_part_of_every_confirmation_and_the_higher_read_counts():
    """confirm_start: each confirmation also reads the run's step-0 episodes; a start read over the ceiling makes
    the confirmation over the ceiling (rollback) without the independent read (it could only be the lower one or
    over the ceiling too), and the saved result records both reads."""
    stub = _Stub({("cheap", 10): 0.3, ("cheap", 20): 0.5, ("confirm", 20): 0.47, ("start", 20): 0.56,
                  ("confirm", 10): 0.42, ("start", 10): 0.44})
    gate, policy, last, seen = _run_gate(_cfg(confirm_start=True), stub, [10, 20, 30])
    assert last == 20 and stub.calls[-3:] == [("start", 20), ("start", 10), ("confirm", 10)]  # no ("confirm", 20)
    assert stub.read_weights[-3:] == [20.0, 10.0, 10.0] and gate.history[1]["independent"] is None
    res = gate.finish(last)
    assert res["bc/steps"] == 10 and res["bc/rolled_back"] and res["eval/success"] == 0.44
    assert res["bc/confirmed_success"] == 0.44 and res["bc/start_success"] == 0.44
    assert res["bc/independent_success"] == 0.42 and "eval/start_success" not in res
    assert gate.history[1]["start"] == 0.56 and gate.history[1]["previous_confirmed"] == {
        "step": 10, "start": 0.44, "start_return": None, "independent": 0.42, "confirmed": 0.44}
    assert torch.equal(policy.weight, seen[10])
    stub = _Stub({("cheap", 10): 0.5, ("confirm", 10): 0.49, ("start", 10): 0.46})  # both in the band: clip
    gate, _, last, _ = _run_gate(_cfg(confirm_start=True), stub, [10, 20])
    res = gate.finish(last)
    assert last == 10 and res["bc/clipped"] and res["eval/success"] == 0.49 and res["bc/start_success"] == 0.46
    # a start read at the ceiling itself still needs the independent read (here it overshoots: no clip)
    stub = _Stub({("cheap", 10): 0.5, ("confirm", 10): 0.52, ("start", 10): 0.50})
    gate, _, last, _ = _run_gate(_cfg(confirm_start=True), stub, [10, 20])
    assert stub.calls[:3] == [("cheap", 10), ("start", 10), ("confirm", 10)] and gate.confirmed[10][0] == 0.52


def test_an_overshooting_start_read_alone_is_the_recorded_confirmation():
    """Only over-the-ceiling confirmations: the lowest is saved (flagged over the ceiling); where the start read
    overshot alone, the result records it and a NaN independent read."""
    stub = _Stub({("cheap", 10): 0.9, ("start", 10): 0.7, ("cheap", 20): 0.9, ("start", 20): 0.48,
                  ("confirm", 20): 0.8})
    gate, policy, last, seen = _run_gate(_cfg(confirm_start=True, overshoot="continue"), stub, [10, 20])
    assert ("confirm", 10) not in stub.calls and ("confirm", 20) in stub.calls
    res = gate.finish(last)
    assert res["bc/steps"] == 10 and res["bc/over_ceiling"] and res["eval/success"] == 0.7
    assert res["bc/start_success"] == 0.7 and math.isnan(res["bc/independent_success"])
    assert torch.equal(policy.weight, seen[10])


@pytest.mark.parametrize("kw", [dict(clip_threshold=0.6, clip_max=0.5), dict(confirm_episodes=0),
                                dict(confirm_start=True, confirm_sampler="sde"), dict(start_eval_envs=0),
                                dict(start_seed=-1),
                                dict(plateau_window=0), dict(plateau_tol=-0.1), dict(clip_max=1.5),
                                dict(ema=1.0), dict(ema=-0.1)])
def test_bcconfig_validation(kw):
    with pytest.raises(ValueError):
        _cfg(**kw)


def test_pretrain_saves_exactly_the_confirmed_weights(tmp_path, monkeypatch):
    """End to end on the toy task with a stubbed evaluator: cheap passes at 20 (confirmation 0.30: go on), overshoot
    at 40 (0.9) rolls back to 20's weights; model.safetensors holds them and the result records both numbers."""
    from safetensors.torch import load_file

    task = get_task("toy")
    write_demos(tmp_path / "d.hdf5", task.demos(20, 0), task.meta())
    values, states = {("confirm", 20): 0.30, ("start", 20): 0.25, ("confirm", 40): 0.90, ("start", 40): 0.8}, {}

    def fake(policy, bon, venv, H, cfg, kind, step, device):
        states[(kind, step)] = {k: v.clone() for k, v in policy.state_dict().items()}
        return {"success": values.get((kind, step), 1.0), "return": 0.0, "success_length": 1.0,
                "episodes": float(cfg.eval_episodes if kind == "cheap" else cfg.confirm_episodes)}

    monkeypatch.setattr(bc_mod, "_evaluate", fake)
    cfg = bc_preset("toy", "tiny", str(tmp_path / "d.hdf5"), gate="confirmed", steps=100, eval_every=20,
                    plateau_window=5, plateau_tol=10.0, eval_episodes=4, eval_envs=4, out_dir=str(tmp_path),
                    run_name="g")
    ckpt, res = pretrain(cfg)
    assert res["bc/steps"] == 20 and res["bc/trained_steps"] == 40 and res["bc/rolled_back"]
    assert res["eval/success"] == 0.30 and res["bc/cheap_success"] == 1.0 and res["eval/episodes"] == 64
    assert res["bc/start_success"] == 0.25 and res["bc/independent_success"] == 0.30
    saved = load_file(str(ckpt / "model.safetensors"))
    for k, v in states[("confirm", 20)].items():
        assert torch.equal(saved[f"actor.{k}"], v) and torch.equal(states[("start", 20)][k], v), k
    gate = json.loads((tmp_path / "g" / "gate.json").read_text())
    assert [c["step"] for c in gate["checks"]] == [20, 40] and gate["checks"][1]["rolled_back_to"] == 20
    assert json.loads((ckpt / "config.json").read_text())["result"]["bc/steps"] == 20


def test_ema_checks_and_saves_the_moving_average_and_leaves_training_unchanged(tmp_path, monkeypatch):
    """--ema d: the checked and saved policy is the warmed-up average a_t = a_{t-1} + tau_t (w_t - a_{t-1}) with
    tau_t = 1 - min(d, (1 + t) / (10 + t)), a_0 = the initial weights; the trained weights are those of ema=0."""
    from safetensors.torch import load_file

    task = get_task("toy")
    write_demos(tmp_path / "d.hdf5", task.demos(20, 0), task.meta())
    seen = {}

    def fake(policy, bon, venv, H, cfg, kind, step, device):
        seen[cfg.ema] = {k: v.clone() for k, v in policy.state_dict().items()}
        return {"success": 0.0, "return": 0.0, "success_length": 1.0, "episodes": 4.0}

    raw, taus, start = [], [], {}
    real = bc_mod.polyak

    def recording(target, source, tau):
        if not start:
            start.update({k: v.clone() for k, v in target.state_dict().items()})
        raw.append({k: v.clone() for k, v in source.state_dict().items()})
        taus.append(tau)
        real(target, source, tau)

    monkeypatch.setattr(bc_mod, "_evaluate", fake)
    monkeypatch.setattr(bc_mod, "polyak", recording)
    ckpts = {}
    for d in (0.0, 0.9):
        cfg = bc_preset("toy", "tiny", str(tmp_path / "d.hdf5"), clip=False, steps=12, eval_every=100, ema=d,
                        eval_episodes=4, eval_envs=4, out_dir=str(tmp_path), run_name=f"e{d}")
        ckpts[d] = load_file(str(pretrain(cfg)[0] / "model.safetensors"))
    assert len(raw) == 12 and taus == pytest.approx([1 - min(0.9, (1 + t) / (10 + t)) for t in range(1, 13)])
    for k, a in start.items():
        if "normalizer" in k:  # buffers: fitted once before training and copied, never averaged
            a = raw[-1][k]
        else:
            for w, tau in zip(raw, taus):
                a = a + tau * (w[k] - a)
        torch.testing.assert_close(ckpts[0.9][f"actor.{k}"], a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(seen[0.9][k], a, rtol=1e-5, atol=1e-6)
        assert torch.equal(ckpts[0.0][f"actor.{k}"], raw[-1][k])  # the average never feeds back into training
    assert not torch.allclose(ckpts[0.9]["actor.net.0.weight"], ckpts[0.0]["actor.net.0.weight"])


# ------------------------------------------------------------------------------------------------ operator noise
def test_operator_draws_are_deterministic_per_seed_and_episode():
    prof = OperatorNoise()
    a, b = draw_episode(prof, episode_rng(0, 3)), draw_episode(prof, episode_rng(0, 3))
    assert a == b and a != draw_episode(prof, episode_rng(0, 4)) and a != draw_episode(prof, episode_rng(1, 3))
    assert prof.gain[0] <= a.expert.gain <= prof.gain[1] and prof.grip_ramp[0] <= a.grip_ramp <= prof.grip_ramp[1]
    assert ExpertParams() == ExpertParams(10.0, 1.0, (0.0, 0.0, 0.0), 0)  # neutral = the clean expert
    with pytest.raises(ValueError):
        OperatorNoise(gain=(5.0, 1.0))


def _operator_actions(seed: int, steps: int = 400, quat=(0.0, 0.0, 0.0, 1.0)):
    prof = OperatorNoise()
    rng = episode_rng(seed, 0)
    layer = OperatorLayer(prof, draw_episode(prof, rng), rng)
    calls = []

    def expert():  # the clean experts' rotation is exactly zero and the gripper exactly +-1
        calls.append(1)
        return np.array([0.5, 0.0, -0.2, 0.0, 0.0, 0.0, 1.0 if len(calls) > 20 else -1.0])

    return np.stack([layer.act(expert, np.array(quat)) for _ in range(steps)]), len(calls)


def test_operator_layer_rotation_gripper_and_pauses():
    acts, n_expert = _operator_actions(0)
    again, _ = _operator_actions(0)
    np.testing.assert_array_equal(acts, again)
    assert not np.array_equal(acts, _operator_actions(1)[0])
    assert (acts[:, 3:6].std(0) > 0.02).all()  # rotation dims now vary
    assert np.abs(acts).max() <= 1.0 and not np.isin(np.abs(acts[:, 6]), [1.0]).any()  # never exactly +-1
    assert (acts[:, 6] < 0).any() and (acts[:, 6] > 0).any()  # still opens and closes
    assert n_expert < 400  # pauses: steps where the expert was not asked
    lag1 = np.corrcoef(acts[1:, 3], acts[:-1, 3])[0, 1]
    assert lag1 > 0.5  # correlated (OU), not i.i.d.


def test_ou_noise_statistics_and_rotation_correction():
    ou = OUNoise(2, 0.2, 8.0, np.random.default_rng(0))
    x = np.stack([ou() for _ in range(40_000)])
    assert x.std() == pytest.approx(0.2, rel=0.1)
    assert np.corrcoef(x[1:, 0], x[:-1, 0])[0, 1] == pytest.approx(math.exp(-1 / 8), abs=0.03)
    # a gripper yawed by +0.3 rad from its starting orientation is pulled back (negative z rotation action)
    prof, rng = OperatorNoise(ou_std=0.0, white_std=0.0, pause_prob=0.0), np.random.default_rng(0)
    layer = OperatorLayer(prof, draw_episode(prof, rng), rng)
    layer.act(lambda: np.zeros(7), np.array([0.0, 0.0, 0.0, 1.0]))
    a = layer.act(lambda: np.zeros(7), np.array([0.0, 0.0, math.sin(0.15), math.cos(0.15)]))
    assert a[5] == pytest.approx(-prof.rot_gain * 0.3, abs=1e-6) and abs(a[3]) < 1e-9 and abs(a[4]) < 1e-9
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(rotvec(R), [0.0, 0.0, math.pi / 2], atol=1e-9)


def test_demo_style_metadata_roundtrip(tmp_path):
    prof = OperatorNoise()
    style = {"style": "operator", "action_noise": 0.0, "params": prof.metadata()}
    eps = get_task("toy").demos(3, 0)
    for i, e in enumerate(eps):
        e.update(style=style, perturbation=draw_episode(prof, episode_rng(0, i)).metadata())
    eps[1]["success"] = False
    write_demos(tmp_path / "d.hdf5", eps, {"obs_keys": ["obs"]})
    d = read_demos(tmp_path / "d.hdf5", only_success=True)
    assert d.num_episodes == 2 and d.demo_meta["style"] == "operator"
    assert d.demo_meta["expert_success"] == pytest.approx(2 / 3) and d.demo_meta["params"]["ou_tau"] == prof.ou_tau
    with h5py.File(tmp_path / "d.hdf5") as f:
        assert json.loads(f["data/demo_2"].attrs["perturbation"])["skill"] == eps[2]["perturbation"]["skill"]


def test_task_demo_styles():
    assert get_task("lift").demo_styles[0] == "operator" and get_task("can").demo_styles[0] == "operator"
    assert get_task("square").demo_styles[0] == "clean" and get_task("toy").demo_styles == ()
    with pytest.raises(ValueError, match="demo style"):
        get_task("toy").demos(2, 0, style="operator")
