"""CLI polish (issue 20, item 5): the `flowft demos` progress bar (stderr only, the file unchanged) and a reader that
closes the pipe early (`flowft --help | head -1`: no BrokenPipeError traceback)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from flowft.cli import main
from flowft.data.readers.hdf5 import write_demos
from flowft.envs import toy
from flowft.envs.demo_progress import demo_bar, episode_done


class _Terminal(io.StringIO):
    """A captured stream that says it is a terminal, so tqdm (disable=None) draws its bar into it."""

    def isatty(self) -> bool:
        return True


def _draw_every_update(monkeypatch) -> None:
    """tqdm redraws at most every 0.1 s and 6 toy episodes take less: draw on every update (tqdm's FAQ way of changing
    a default; TQDM_MININTERVAL is read when tqdm is imported, too late here)."""
    from functools import partialmethod

    from tqdm import tqdm

    monkeypatch.setattr(tqdm, "__init__", partialmethod(tqdm.__init__, mininterval=0))


def _h5_items(path) -> dict:
    """Every dataset (as an array) and attribute of an HDF5 file, keyed by its path."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, node):
            out.update({f"{name}@{k}": v for k, v in node.attrs.items()})
            if isinstance(node, h5py.Dataset):
                out[name] = node[()]
        out.update({f"@{k}": v for k, v in f.attrs.items()})
        f.visititems(visit)
    return out


def _assert_same_file(a, b) -> None:
    ia, ib = _h5_items(a), _h5_items(b)
    assert sorted(ia) == sorted(ib)
    for k in ia:
        assert np.array_equal(np.asarray(ia[k]), np.asarray(ib[k])), k


def _demos(argv, monkeypatch, stderr) -> str:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["demos", "--env", "toy", "--episodes", "6", *argv]) == 0
    return out.getvalue()


def test_demos_bar_is_on_stderr_and_the_file_is_unchanged(tmp_path, monkeypatch):
    _draw_every_update(monkeypatch)
    with_bar, without_bar, reference = tmp_path / "bar.hdf5", tmp_path / "nobar.hdf5", tmp_path / "ref.hdf5"
    err = _Terminal()
    out = _demos(["--out", str(with_bar)], monkeypatch, err)
    # the bar: episode count, ETA (elapsed<remaining) and the running expert success count, all on stderr
    assert "demos toy" in err.getvalue() and re.search(r"6/6 \[\d\d:\d\d<\d\d:\d\d", err.getvalue()), err.getvalue()
    assert "expert success" in err.getvalue()
    # stdout: only the result line
    assert out.splitlines() == [out.strip()] and "\r" not in out
    assert out.startswith(f"wrote 6 episodes (clean style) to {with_bar} in ")

    err_off = _Terminal()
    out_off = _demos(["--out", str(without_bar), "--no-progress"], monkeypatch, err_off)
    assert "demos toy" not in err_off.getvalue() and "\r" not in err_off.getvalue()  # --no-progress: no bar
    assert out_off.replace(str(without_bar), "F").split(" in ")[0] == out.replace(str(with_bar), "F").split(" in ")[0]

    # the file the generator wrote before the bar existed: the same episodes, byte-for-byte equal arrays
    eps = toy.generate_episodes(6, 0, 0.1)
    write_demos(reference, eps, toy.env_meta())
    _assert_same_file(with_bar, reference)
    _assert_same_file(without_bar, reference)
    rate = float(np.mean([e["success"] for e in eps]))
    assert f"expert success rate {rate:.3f}" in out


def test_demos_draws_no_bar_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    err = io.StringIO()  # a log file / CI: isatty() is False
    _demos(["--out", str(tmp_path / "d.hdf5")], monkeypatch, err)
    assert err.getvalue() == "flowft demos: generating 6 episodes of toy ...\n"


def test_a_generator_that_never_ticks_gets_a_full_bar(monkeypatch):
    _draw_every_update(monkeypatch)
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    episode_done({"success": True})  # no open bar: nothing happens
    with demo_bar(4, "demos mine"):
        episode_done({"success": True})
        episode_done({"success": False})
    assert "2/4" in err.getvalue() and "expert success 1/2" in err.getvalue() and "4/4" in err.getvalue()
    assert "1/4" not in err.getvalue().split("2/4")[-1]  # the filling step jumps 2 -> 4


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["demos", "--help"]])
def test_a_closed_stdout_pipe_exits_141_without_a_traceback(argv):
    r, w = os.pipe()
    os.close(r)  # the reader is gone before flowft writes anything (`| head -1` after its first line), every time
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from flowft.cli import main; sys.exit(main())",
                               *argv], stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_the_shell_pipeline_prints_the_first_line_only():
    code = "import sys; from flowft.cli import main; sys.exit(main())"
    proc = subprocess.run(f"'{sys.executable}' -c '{code}' --help | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.startswith("usage: flowft {demos,") and proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_demos_help_loads_neither_torch_nor_the_simulators():
    code = ("import sys\nfrom flowft.cli import main\ntry:\n    main(['demos', '--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'numpy', 'h5py', 'flowft.registry') if m in sys.modules], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--progress, --no-progress" in proc.stdout and proc.stderr.splitlines()[-1] == "[]", proc.stderr
