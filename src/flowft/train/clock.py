"""The time/* columns of metrics.csv (throughput with and without in-loop evaluation time)."""

from __future__ import annotations

import time


class Clock:
    """The time/* columns: throughput over this sitting and over the last log window, both without in-loop
    evaluation time (update_frac = the learner's share of training wall time)."""

    def __init__(self, steps0: int):
        self.t0 = self._now = time.perf_counter()
        self.steps0, self.t_update, self.t_eval = steps0, 0.0, 0.0
        self.win = (self.t0, steps0, 0.0, 0.0)  # (time, env steps, update s, eval s) at the previous log row

    def row(self, steps: int) -> dict[str, float]:
        self._now = now = time.perf_counter()
        dt, wdt = now - self.t0 - self.t_eval, now - self.win[0] - (self.t_eval - self.win[3])
        return {"time/sps": (steps - self.steps0) / dt, "time/update_frac": self.t_update / dt,
                "time/eval_s": self.t_eval, "time/sps_window": (steps - self.win[1]) / wdt,
                "time/update_frac_window": (self.t_update - self.win[2]) / wdt}

    def mark(self, steps: int) -> None:
        self.win = (self._now, steps, self.t_update, self.t_eval)
