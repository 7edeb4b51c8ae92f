"""Runnable examples (run from the repository root: python examples/NAME.py)."""
