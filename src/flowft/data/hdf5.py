"""Old import path of the robomimic-style HDF5 reader/writer, kept for callers outside flowft.data (quickstart,
bench worker, tests). New code imports flowft.data.readers.hdf5 (the format), flowft.data.load (load_demos) and
flowft.data.dataset (DemoDataset)."""

from flowft.data.dataset import DemoDataset, EpisodeCollector  # noqa: F401
from flowft.data.load import load_demos  # noqa: F401
from flowft.data.readers.common import (ACTION_MARGIN, check_actions, check_file, json_attr,  # noqa: F401
                                        open_hdf5)
from flowft.data.readers.hdf5 import read_demos, write_demos  # noqa: F401
