"""The honest BC clip gate (issue 17): a flattened loss, a cheap periodic check, and a confirmation of the weights
that get saved.

Why: the earlier gate stopped at the first 16-episode SDE check with success >= 0.45. Stopping on the first of many
noisy reads of a fast-rising curve overshoots: on Lift it read 0.69 while a 64-episode ODE eval of the same weights
read 0.19, and Can stopped at 1.5-3k steps with the loss still falling (an underfit policy, not a "clipped" one).
Here the clip may only apply once the BC loss has flattened; a cheap check that passes only *triggers* a
confirmation of `confirm_episodes` episodes of the policy the finetuning run starts from and is evaluated on (ODE),
on episodes disjoint from the cheap check's (a confirmation that reused them would inherit the selection on the
cheap check's luck); the clip decision and the recorded success are the confirmed ones, and the saved checkpoint
is exactly the confirmed weights.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import torch


class LossPlateau:
    """Windowed-mean plateau test: the loss has flattened when the mean over the last `window` steps improves on
    the mean over the `window` steps before by less than `tol` (relative). A per-batch CFM loss is very noisy
    (random times and noise draws), so single values or short EMAs would flag a plateau by chance."""

    def __init__(self, window: int, tol: float):
        self.window, self.tol = window, tol
        self.buf: deque[float] = deque(maxlen=2 * window)

    def update(self, loss: float) -> None:
        self.buf.append(float(loss))

    def means(self) -> tuple[float, float] | None:
        """(mean of the earlier window, mean of the last window), or None before 2 windows were seen."""
        if len(self.buf) < 2 * self.window:
            return None
        vals = list(self.buf)
        return sum(vals[:self.window]) / self.window, sum(vals[self.window:]) / self.window

    def smoothed(self) -> float:
        vals = list(self.buf)[-self.window:]
        return sum(vals) / len(vals) if vals else math.nan

    def improvement(self) -> float:
        """Relative improvement of the last window over the one before (nan until 2 windows were seen)."""
        m = self.means()
        if m is None:
            return math.nan
        return (m[0] - m[1]) / max(abs(m[0]), 1e-12)

    def flat(self) -> bool:
        return self.means() is not None and self.improvement() < self.tol


Evaluate = Callable[[str, int], dict]
"""evaluate(kind, step) -> evaluation dict with a "success" key; kind is "cheap" or "confirm"."""


def _snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class ClipGate:
    """The clip decision of one BC run (cfg: BCConfig with gate == "confirmed"). `check` runs at every periodic
    check and returns True when training should stop; `finish` loads the weights to save into the policy and
    returns the result dict. Every check is appended to `history` (written to gate.json)."""

    def __init__(self, cfg, policy: torch.nn.Module, evaluate: Evaluate):
        self.cfg, self.policy, self.evaluate = cfg, policy, evaluate
        self.plateau = LossPlateau(cfg.plateau_window, cfg.plateau_tol)
        self.plateau_step: int | None = None
        self.history: list[dict] = []
        self.prev: tuple[int, dict, float] | None = None  # last flat check: (step, weights, cheap success)
        self.confirmed: dict[int, tuple[float, dict, dict]] = {}  # step -> (success, eval dict, weights)
        self.chosen: int | None = None  # step whose weights are saved
        self.rolled_back = False

    # --------------------------------------------------------------------------------------------- decisions
    def check(self, step: int) -> bool:
        cfg = self.cfg
        rec = {"step": step, "loss_smooth": self.plateau.smoothed(), "loss_improvement": self.plateau.improvement()}
        if self.plateau_step is None and step >= cfg.min_steps and self.plateau.flat():
            self.plateau_step = step  # latched: later noise in the windowed means does not re-close the gate
        rec["flat"] = self.plateau_step is not None
        self.history.append(rec)
        if not rec["flat"]:
            return False  # the clip cannot apply yet, and simulator evals dominate BC's wall time: skip them
        cheap = self.evaluate("cheap", step)
        rec["cheap"] = cheap["success"]
        weights = _snapshot(self.policy)
        stop = False
        if cheap["success"] >= cfg.clip_threshold:
            conf = self._confirm(step, weights, rec)
            if cfg.clip_threshold <= conf <= cfg.clip_max:
                self.chosen, stop = step, True
            elif conf > cfg.clip_max and cfg.overshoot == "rollback":
                stop = self._rollback(rec)
        self.prev = (step, weights, cheap["success"])
        return stop

    def _confirm(self, step: int, weights: dict, rec: dict) -> float:
        """Confirm the weights evaluated at `step` (loaded in the policy now): the independent read and, with
        confirm_start, the start read; the higher one counts and its evaluation dict is the one recorded. A start
        read above clip_max decides alone (the higher read is over the ceiling whatever the independent one says),
        so the independent read is skipped (recorded as None): 64 episodes saved on every overshoot."""
        if self.cfg.confirm_start:
            start = self.evaluate("start", step)
            rec["start"], rec["start_return"] = start["success"], start["return"]
            res = self.evaluate("confirm", step) if start["success"] <= self.cfg.clip_max else None
            rec["independent"] = None if res is None else res["success"]
            res = start if res is None else max((start, res), key=lambda r: r["success"])  # the start read on a tie
            res = {**res, **{f"start_{k}": v for k, v in start.items()},
                   "independent_success": math.nan if rec["independent"] is None else rec["independent"]}
        else:
            res = self.evaluate("confirm", step)
        self.confirmed[step] = (res["success"], res, weights)
        rec["confirmed"] = res["success"]
        return res["success"]

    def _rollback(self, rec: dict) -> bool:
        """Overshoot: the previous flat check's weights (eval_every steps earlier; their cheap check did not pass,
        so they are likely below the ceiling) are confirmed too; stop when any confirmed weights are <= clip_max."""
        if self.prev is not None and self.prev[0] not in self.confirmed:
            step, weights, _ = self.prev
            now = _snapshot(self.policy)
            self.policy.load_state_dict(weights)  # the evaluations read the policy's current weights
            rec["previous_confirmed"] = {"step": step}  # _confirm fills in the reads
            self._confirm(step, weights, rec["previous_confirmed"])
            self.policy.load_state_dict(now)
        best = self._best()
        if best is not None and self.confirmed[best][0] <= self.cfg.clip_max:
            self.chosen, self.rolled_back = best, best != rec["step"]
            rec["rolled_back_to"] = best
            return True
        return False

    def _cap_cannot_win(self, rec: dict) -> bool:
        """Skip confirming the final weights at the cap when confirmed weights <= clip_max exist and the final
        weights' cheap check read below them. The cheap check is what decides at every other check whether weights
        are confirmed; at the cap it is overruled only when nothing confirmed can be saved or the final weights may
        beat the best. Why: on Lift seed 0 the cap confirmation (128 episodes, ~2 min of a 15-minute quickstart)
        read 0.34 after a cheap 0.19, only to roll back to the 7k weights confirmed at 0.44."""
        best = self._best()
        if best is None or self.confirmed[best][0] > self.cfg.clip_max or "cheap" not in rec:
            return False
        if rec["cheap"] >= self.confirmed[best][0]:
            return False
        rec["cap_skipped"] = {"best_step": best, "best_confirmed": self.confirmed[best][0]}
        return True

    def _best(self) -> int | None:
        """The confirmed weights to fall back to: the highest success <= clip_max (closest to the threshold from
        below), else the lowest success above it."""
        if not self.confirmed:
            return None
        below = [s for s, v in self.confirmed.items() if v[0] <= self.cfg.clip_max]
        if below:
            return max(below, key=lambda s: (self.confirmed[s][0], s))
        return min(self.confirmed, key=lambda s: (self.confirmed[s][0], -s))

    # --------------------------------------------------------------------------------------------- result
    def finish(self, last_step: int) -> dict:
        """Pick the weights to save (loaded into the policy) and build the result dict. Without a stop, the final
        weights are confirmed too (unless `_cap_cannot_win`) and the best confirmed weights are saved (the cap
        rule)."""
        cfg = self.cfg
        if self.chosen is None:
            rec = self.history[-1] if self.history and self.history[-1]["step"] == last_step else {"step": last_step}
            if last_step not in self.confirmed and not self._cap_cannot_win(rec):
                self._confirm(last_step, _snapshot(self.policy), rec)
            self.chosen = self._best()
            self.rolled_back = self.chosen != last_step
        conf, res, weights = self.confirmed[self.chosen]
        self.policy.load_state_dict(weights)
        cheap = next((h.get("cheap", math.nan) for h in self.history if h["step"] == self.chosen), math.nan)
        # bc/start_*: the whole start read (a run from these weights may log it as its step-0 evaluation)
        reads = {f"bc/{k}": v for k, v in res.items() if k.startswith("start_") or k == "independent_success"}
        return {**{f"eval/{k}": v for k, v in res.items() if f"bc/{k}" not in reads},
                **reads, "bc/steps": self.chosen, "bc/trained_steps": last_step,
                "bc/clipped": bool(cfg.clip_threshold <= conf <= cfg.clip_max), "bc/confirmed_success": conf,
                "bc/cheap_success": cheap, "bc/over_ceiling": bool(conf > cfg.clip_max),
                "bc/rolled_back": bool(self.rolled_back), "bc/confirmations": len(self.confirmed),
                "bc/plateau_step": self.plateau_step if self.plateau_step is not None else -1,
                "bc/loss_smooth": next((h["loss_smooth"] for h in self.history if h["step"] == self.chosen), math.nan)}
