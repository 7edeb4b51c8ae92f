"""Checks on a toy-task result that a wrong success or return accounting fails (issue 22: `0 <= success <= 1` and
`isfinite` could not). The toy task (envs/toy.py) pays -1 per step, 0 on the success step, which terminates; a failure
is truncated at the horizon. So an evaluation's numbers are tied together exactly:
    success * episodes is a whole number of episodes, and
    return = -(1 - success) * horizon - success * (success_length - 1)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

HORIZON = 12


def assert_toy_eval(res: dict, episodes: int, run_dir: Path | None = None) -> list[str]:
    """res: an evaluation dict (eval/<sampler>/{success, return, success_length, episodes}); when run_dir is given,
    the same numbers must be the last logged eval of its metrics.csv. Returns the samplers checked."""
    samplers = sorted({k.split("/")[1] for k in res if k.startswith("eval/") and k.endswith("/success")})
    assert samplers, res
    rows = list(csv.DictReader((run_dir / "metrics.csv").open())) if run_dir is not None else []
    for m in samplers:
        s, ret, length, n = (res[f"eval/{m}/{k}"] for k in ("success", "return", "success_length", "episodes"))
        assert n == episodes, (m, n)
        k = s * n
        assert k == pytest.approx(round(k), abs=1e-9) and 0 <= round(k) <= n, (m, s)
        expected = -(1.0 - s) * HORIZON - (s * (length - 1.0) if k > 0.5 else 0.0)
        assert ret == pytest.approx(expected, abs=1e-9), (m, res)
        if rows:
            logged = [r for r in rows if r.get(f"eval/{m}/success")]
            assert logged, f"eval/{m}/success never logged"
            for key in ("success", "return"):
                assert float(logged[-1][f"eval/{m}/{key}"]) == pytest.approx(res[f"eval/{m}/{key}"]), (m, key)
    return samplers
