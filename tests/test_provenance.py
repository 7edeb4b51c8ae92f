"""Which code made a run: the source digest, provenance.jsonl, and the report's warning for mixed code."""

import csv
import json
import shutil
from pathlib import Path

from flowft.bench import report
from flowft.utils import provenance
from helpers import fake_run


def test_source_digest_follows_the_sources_only(tmp_path):
    pkg = tmp_path / "a" / "flowft"
    shutil.copytree(provenance.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = provenance.source_digest.__wrapped__
    assert digest(pkg) == provenance.source_digest()  # a copy of the same sources (wheel, checkout) agrees
    (pkg / "assets" / "notes.txt").write_text("not code")
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "junk.py").write_text("x = 1")
    assert digest(pkg) == provenance.source_digest()  # non-code files and caches do not count
    loop = pkg / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\n# an edit\n")
    assert digest(pkg) != provenance.source_digest()
    assert len(digest(pkg)) == 12


def test_record_appends_one_line_per_sitting(tmp_path):
    first = provenance.record(tmp_path)
    provenance.record(tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "provenance.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["source"] == first["source"] == provenance.source_digest()
    assert {"git_commit", "git_dirty", "torch", "numpy", "flowft"} <= set(first)
    assert provenance.sources(tmp_path) == [first["source"]] and provenance.sources(tmp_path / "none") == []


def _run(root: Path, algo: str, seed: int, digests: list[str]) -> None:
    d = fake_run(root, algo, seed, [0, 1000], {"eval/ode/success": [0.2, 0.6]})
    if digests:
        (d / "provenance.jsonl").write_text("".join(json.dumps({"source": x}) + "\n" for x in digests))


def test_report_lists_sources_and_warns_on_mixed_code(tmp_path, capsys):
    _run(tmp_path, "ogpo", 0, ["aaaaaaaaaaaa"])
    _run(tmp_path, "ogpo", 1, ["aaaaaaaaaaaa", "aaaaaaaaaaaa"])
    out = report.write_report([tmp_path / "toy"], tmp_path / "one")
    assert "Warning" not in out.read_text() and capsys.readouterr().err == ""
    _run(tmp_path, "ogpo", 2, ["aaaaaaaaaaaa", "bbbbbbbbbbbb"])  # resumed under edited code
    _run(tmp_path, "dppo", 0, [])  # made before provenance was recorded
    out = report.write_report([tmp_path / "toy"], tmp_path / "two")
    md = out.read_text()
    assert "made by 2 versions of the flowft sources** (aaaaaaaaaaaa, bbbbbbbbbbbb" in md
    assert "1 run(s) were resumed under different code" in md and "1 run(s) predate provenance" in md
    assert "Warning" in capsys.readouterr().err
    rows = {(r["method"], r["seed"]): r["source"] for r in csv.DictReader((tmp_path / "two" / "runs.csv").open())}
    assert rows == {("ogpo", "0"): "aaaaaaaaaaaa", ("ogpo", "1"): "aaaaaaaaaaaa",
                    ("ogpo", "2"): "aaaaaaaaaaaa;bbbbbbbbbbbb", ("dppo", "0"): ""}
