"""The published numbers follow from the committed run CSVs: every report under docs/results/ is rebuilt from the
run directories its report.json names (docs/results/runs/...) and must match byte for byte, and every claims table
is recomputed from its recorded command. Reports whose run directories were lost live under docs/results/legacy/
(its README says which and why) and are not checked."""

import csv
import importlib.util
import shlex
from pathlib import Path

import pytest

from flowft.bench.verify import verify_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
REPORTS = sorted(p.parent for p in RESULTS.glob("*/summary.csv"))
CLAIMS = sorted(RESULTS.glob("claims-*.md"))


def test_there_are_published_reports():
    assert len(REPORTS) >= 3 and CLAIMS


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_report_is_rebuilt_from_committed_runs(report, monkeypatch):
    monkeypatch.chdir(ROOT)  # report.json paths are relative to the repository root
    assert (report / "report.json").exists(), f"{report}: made without recorded inputs; rebuild it or move it to legacy/"
    for row in csv.DictReader((report / "runs.csv").open()):
        run = ROOT / row["run_dir"]
        assert not Path(row["run_dir"]).is_absolute() and (run / "metrics.csv").exists() and (run / "config.json").exists(), row
    assert verify_report(report) == []


@pytest.mark.parametrize("table", CLAIMS, ids=lambda p: p.name)
def test_claims_table_is_recomputed(table, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    first, *lines = table.read_text().splitlines()
    assert first.startswith("<!-- python benchmarks/claims.py ") and first.endswith(" -->"), first
    argv = shlex.split(first[5:-4])[2:]  # drop "python benchmarks/claims.py"
    out = argv.index("--out") if "--out" in argv else None
    if out is not None:
        del argv[out:out + 2]
    spec = importlib.util.spec_from_file_location("claims", ROOT / "benchmarks" / "claims.py")
    claims = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(claims)
    claims.main(argv)
    assert capsys.readouterr().out.splitlines() == lines
