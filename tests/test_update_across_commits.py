"""benchmarks/update_across_commits.py: one process per entry and cycle, in order, each timing the requested number of
updates of the same OGPO+CA update; the summary's ratios are to the other checkout's eager update; a wrong --old is
refused with one line naming it."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "update_across_commits.py"
SRC = Path(__file__).resolve().parents[1] / "src"


def _run(*args, check=True):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          check=check)


def test_entries_and_cycles_in_order_with_ratios_to_the_old_eager_update():
    out = _run("--old", str(SRC), "--modes", "eager", "--cycles", "2", "--rounds", "2").stdout
    cycles = re.findall(r"^cycle (\d): (old eager|this eager): median ([\d.]+) min ([\d.]+) CPU ms", out, re.M)
    assert [(c, name) for c, name, _, _ in cycles] == [("0", "old eager"), ("0", "this eager"),
                                                       ("1", "old eager"), ("1", "this eager")]
    assert all(float(mn) <= float(med) for _, _, med, mn in cycles)
    rows = dict(re.findall(r"^\| (old eager|this eager) \| [\d.]+ \([\d.]+\) \| ([\d.]+) \([\d.]+\) \|$", out, re.M))
    assert rows["old eager"] == "1.00" and float(rows["this eager"]) > 0


def test_an_old_path_without_flowft_is_refused_in_one_line(tmp_path):
    res = _run("--old", str(tmp_path), check=False)
    assert res.returncode == 2
    assert f"--old must be the src/ directory of a flowft checkout, got {tmp_path}" in res.stderr.strip().splitlines()[-1]
