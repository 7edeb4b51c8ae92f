"""Errors flowft raises on purpose. The CLI prints them as one line (the full traceback with `--debug` or
FLOWFT_DEBUG=1); anything else is a bug and keeps its traceback.

Each subclass also derives from the builtin a caller would naturally catch (ValueError, FileNotFoundError, ...), so
code written against the builtins keeps working.
"""

from __future__ import annotations


class FlowftError(Exception):
    """Base of every deliberate flowft error: the message is one line that names the flag or file at fault."""


class ConfigError(FlowftError, ValueError):
    """A config value is out of range (the message names the flag and the allowed range)."""


class DataError(FlowftError, ValueError):
    """A demonstration / dataset file is missing, unreadable or malformed (the message names the file)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A demonstration file or dataset does not exist (also a FileNotFoundError, for callers catching that)."""


class CheckpointError(FlowftError, RuntimeError):
    """A checkpoint or run dir is missing, damaged, non-finite, locked or incompatible (the message names it)."""
