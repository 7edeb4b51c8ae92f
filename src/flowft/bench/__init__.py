"""Benchmark harness: named suites (suites.py), the resumable grid runner (runner.py), reports (report.py)."""
