"""`flowft report --verify OUT`: rebuild a report from the inputs it recorded (report.json) and compare its CSVs,
so a published table that does not follow from its run CSVs is caught (tests/test_results.py runs it on
docs/results/)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flowft.bench.report import write_report

REPORT_CSVS = ("summary.csv", "runs.csv", "curves.csv", "throughput.csv")


def verify_report(out: Path) -> list[str]:
    """Regenerate the report in `out` from its report.json (paths relative to the working directory) into a
    temporary directory and compare every CSV byte for byte; returns one line per difference (empty = reproduced).
    The PNGs are not compared (they depend on the matplotlib version)."""
    out = Path(out)
    if not (out / "report.json").exists():
        raise ValueError(f"{out}: no report.json (not written by `flowft report`, or written before it recorded "
                         "its inputs)")
    inputs = json.loads((out / "report.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        write_report([Path(d) for d in inputs["dirs"]], Path(tmp), inputs["sampler"], inputs["label"],
                     tuple(inputs["thresholds"]), inputs["title"], tuple(inputs["methods"]), tuple(inputs["metrics"]))
        problems = []
        for name in REPORT_CSVS:
            if not (out / name).exists():
                problems.append(f"{out / name}: missing")
                continue
            new, old = (Path(tmp) / name).read_text(), (out / name).read_text()
            if new != old:
                diff = [f"    committed: {a}\n    rebuilt:   {b}" for a, b in zip(old.splitlines(), new.splitlines())
                        if a != b][:3]
                problems.append(f"{out / name}: differs from the rebuilt report\n" + "\n".join(diff))
    return problems
