"""benchmarks/throughput.py on toy: one simulator-alone row and one training row per `--vectorization` setting, in
the given order, named by the setting; without the flag the method names carry no setting (the committed CSVs')."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_bc_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def _run(tmp_path, *extra) -> list[dict]:
    out = tmp_path / f"thr{len(extra)}.csv"
    bc = make_bc_checkpoint(tmp_path, steps=50)
    subprocess.run([sys.executable, str(SCRIPT), "--task", "toy", "--algos", "ogpo-plus-ca", "--bc-checkpoint",
                    str(bc), "--steps", "64", "--warmup", "32", "--overlap", "off", "--out", str(out), *extra],
                   check=True, capture_output=True, text=True, timeout=600)
    return list(csv.DictReader(out.open()))


def test_each_vectorization_setting_is_timed_in_order(tmp_path):
    rows = _run(tmp_path, "--vectorization", "sync", "async")
    assert [r["method"] for r in rows] == ["simulator-alone+sync", "ogpo-plus-ca+sync",
                                           "simulator-alone+async", "ogpo-plus-ca+async"]
    assert all(float(r["sps"]) > 0 for r in rows)
    sim = {r["method"].split("+")[-1]: float(r["sps"]) for r in rows if r["method"].startswith("simulator")}
    for r in rows[1::2]:  # each training row's fraction is of its own setting's simulator-alone rate
        # (the CSV's rates are rounded to 0.1 after the fraction was taken, so compare to its 3 decimals)
        assert float(r["fraction_of_sim"]) == pytest.approx(float(r["sps"]) / sim[r["method"].split("+")[-1]], abs=1e-3)


def test_without_the_flag_the_names_are_unchanged(tmp_path):
    assert [r["method"] for r in _run(tmp_path)] == ["simulator-alone", "ogpo-plus-ca"]
