"""The published numbers follow from the committed run CSVs: every report under docs/results/ is rebuilt from the
run directories its report.json names (docs/results/runs/...) and must match byte for byte (its CSVs and report.md),
and every claims table is recomputed from its recorded command. Reports whose run directories were lost live under
docs/results/legacy/ (its README says which and why) and are not checked.

The prose pages are checked too (issue 22): every results table in docs/results.md that is a report or claims table
must be a verbatim copy of rows of those verified files, and every other number that docs/results.md or the README
states about a published run is listed in docs/results/stated_numbers.csv with the CSV (and step) it comes from:
the page must still say it, and the CSV must still give it (docs/testing.md says how to add a row)."""

import csv
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from flowft.bench import verify
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
    # report.md is rebuilt with the CSVs: a hand edit of a reported number fails like a CSV edit would
    monkeypatch.setattr(verify, "REPORT_CSVS", (*verify.REPORT_CSVS, "report.md"))
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


# ------------------------------------------------------------------------------------------- the prose pages
STATED = RESULTS / "stated_numbers.csv"
DOCS = {"README.md": ROOT / "README.md", "docs/results.md": ROOT / "docs" / "results.md"}


def _norm(text: str) -> str:
    """Whitespace collapsed (line wraps do not matter) and the typographic minus as '-'."""
    return " ".join(text.replace("\u2212", "-").split())


def _verified_lines() -> tuple[set[str], set[str]]:
    """(table rows, table header rows) of every verified report.md and claims table."""
    rows, headers = set(), set()
    for path in [r / "report.md" for r in REPORTS] + CLAIMS:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        for i, ln in enumerate(lines):
            if ln.startswith("|"):
                rows.add(ln)
                if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
                    headers.add(ln)
    return rows, headers


def test_results_page_tables_are_copies_of_verified_tables():
    """Every table of docs/results.md with a report's or claims table's header is made of rows of those files."""
    rows, headers = _verified_lines()
    lines = [ln.strip() for ln in DOCS["docs/results.md"].read_text().splitlines()]
    checked, bad = 0, []
    for i, ln in enumerate(lines):
        if ln.startswith("| method | seeds |"):  # a report / claims table: its header must be a verified one too
            assert ln in headers, f"docs/results.md:{i + 1}: table header of no verified report: {ln}"
        if ln in headers and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                checked += 1
                if lines[j] not in rows:
                    bad.append(f"docs/results.md:{j + 1}: {lines[j]}")
                j += 1
    assert not bad, "rows not in any verified report.md / claims table:\n" + "\n".join(bad)
    assert checked >= 60, checked  # the toy, Lift, extraction, door, Can, claims and ablation tables (67 rows)


def _stated_values(row: dict) -> list[float]:
    """The values a stated_numbers.csv row points at: a column of the named CSV's rows matching `where`, or a
    metrics.csv column at env step `step` ('a..b' or 'a..b/stride' for a range) of every run dir the glob names."""
    paths = sorted(ROOT.glob(row["source"]))
    assert paths, f"{row['source']}: no such file or run directory"
    values = []
    if row["source"].endswith(".csv"):
        where = dict(kv.split("=", 1) for kv in row["where"].split(";")) if row["where"] else {}
        for path in paths:
            values += [float(r[row["column"]]) for r in csv.DictReader(path.open())
                       if all(r[k] == v for k, v in where.items())]
        return values
    rng, _, stride = row["step"].partition("/")
    lo, _, hi = rng.partition("..")
    lo, hi, stride = int(lo), int(hi or lo), int(stride or 1)
    for run in paths:
        values += [float(r[row["column"]]) for r in csv.DictReader((run / "metrics.csv").open())
                   if r.get(row["column"]) and lo <= int(float(r["env_steps"])) <= hi
                   and (int(float(r["env_steps"])) - lo) % stride == 0]
    return values


def _stated_rows() -> list[dict]:
    return list(csv.DictReader(STATED.open()))


def test_stated_numbers_cover_both_pages():
    rows = _stated_rows()
    assert {r["doc"] for r in rows} == set(DOCS) and len(rows) >= 100


@pytest.mark.parametrize("row", _stated_rows(), ids=lambda r: f"{r['doc']}:{r['number']}@{r['source'].split('/')[-2:]}")
def test_stated_number_is_on_the_page_and_in_the_csv(row):
    """The page still says it (the quote, which contains the number, is in the page) and the CSV still gives it,
    rounded as stated; agg: '' exactly one value, mean / min / max over the values, ge: every value >= it."""
    page = _norm(DOCS[row["doc"]].read_text())
    quote, number = _norm(row["quote"]), _norm(row["number"])
    assert quote in page, f"{row['doc']} no longer says: {row['quote']}"
    assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", quote), (number, quote)
    values = _stated_values(row)
    assert values, f"{row['source']} has no {row['column']} at {row['step'] or row['where']}"
    decimals = len(number.partition(".")[2])
    if row["agg"] == "ge":
        assert min(values) >= float(number), (row, values)
        return
    if row["agg"] == "":
        assert len(values) == 1, (row, values)
    value = {"": values[0], "mean": sum(values) / len(values), "min": min(values), "max": max(values)}[row["agg"]]
    # rounded as stated: either half-up or half-even rounding of the value (0.625 may read 0.62 or 0.63)
    assert abs(value - float(number)) <= 0.5 * 10.0 ** -decimals + 1e-9, \
        f"{row['doc']} says {number}, {row['source']} gives {value}"


BC_CHECKPOINTS = sorted(p.parent for p in (RESULTS / "runs").rglob("checkpoint/model.safetensors"))


@pytest.mark.parametrize("ckpt", BC_CHECKPOINTS, ids=lambda p: "/".join(p.relative_to(RESULTS / "runs").parts[:-1]))
def test_published_bc_checkpoint_is_the_gated_policy(ckpt):
    """A published BC's weights are intact (sha256 manifest), are the weights its gate.json read (the checkpoint
    records the same result), and load as the starting actor of a run with the same policy architecture."""
    import json

    import torch

    from flowft.deploy import load_bc_actor
    from flowft.policies.flow import FlowPolicyConfig
    from flowft.utils.config_io import from_dict
    from flowft.utils.manifest import check_dir

    check = check_dir(ckpt, deep=True)
    assert check.usable, check.problem
    cfg = json.loads((ckpt / "config.json").read_text())
    gate = json.loads((ckpt.parent / "gate.json").read_text())
    assert cfg["kind"] == "bc" and json.dumps(cfg["result"], sort_keys=True) == json.dumps(gate["result"], sort_keys=True)
    weights = load_bc_actor(ckpt, cfg["dims"], from_dict(FlowPolicyConfig, cfg["policy"]), cfg["task"])
    assert weights and all(torch.isfinite(v).all() for v in weights.values())
