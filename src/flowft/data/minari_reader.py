"""Old import path of the Minari reader, kept for callers outside flowft.data; new code imports
flowft.data.readers.minari."""

from flowft.data.readers.minari import read_minari, resolve_minari_path  # noqa: F401
