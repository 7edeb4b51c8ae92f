"""`load_demos`: pick the reader (flowft.data.readers) for a demo file or dataset and read it."""

from __future__ import annotations

from pathlib import Path

from flowft.data.dataset import DemoDataset
from flowft.data.readers import DemoReader, ReadOptions
from flowft.data.readers import hdf5 as _hdf5
from flowft.data.readers import minari as _minari
from flowft.data.readers.common import open_hdf5
from flowft.errors import DataError

READERS: dict[str, DemoReader] = {r.name: r for r in (_hdf5.READER, _minari.READER)}
"""Format name (BCConfig.demos_format) -> reader."""


def detect_format(p: Path) -> str:
    """The reader whose layout an existing HDF5 file has (its top-level keys); anything else is one DataError."""
    with open_hdf5(p) as f:
        top = list(f.keys())
    for name, reader in READERS.items():
        if reader.detect(top):
            return name
    raise DataError(f"{p}: neither a robomimic-style file (group 'data') nor a Minari dataset "
                    f"('episode_<i>' groups); top-level keys: {sorted(top)[:10]}")


def load_demos(path: str, fmt: str = "auto", opts: ReadOptions | None = None, **kw) -> DemoDataset:
    """Demonstrations from a robomimic-style HDF5 file (ours or robomimic's) or a Minari dataset on disk
    (directory, main_data.hdf5 or dataset id under $MINARI_DATASETS_PATH). `auto` picks by the file's layout; a file
    that exists but is empty, not HDF5 or in neither layout is reported as such, never as a missing dataset.
    `opts` (or ReadOptions' fields as keywords) say which keys, which success rule and which episodes."""
    opts = opts or ReadOptions(**{**kw, "obs_keys": tuple(kw.get("obs_keys") or ())})
    p = Path(path)
    if fmt == "auto":
        if p.is_file():
            fmt = detect_format(p)
        else:  # a missing .hdf5 path is a missing demo file, not a Minari id; directories and ids are Minari
            fmt = "robomimic" if p.suffix in (".hdf5", ".h5") and not p.exists() else "minari"
    if fmt not in READERS:
        raise DataError(f"unknown demo format {fmt!r} (known: auto, {', '.join(READERS)})")
    return READERS[fmt].read(path, opts)
