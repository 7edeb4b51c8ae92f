"""The README's Python API snippet runs as written (issue 20: it must say where `obs` comes from and work)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import make_bc_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_snippet_runs(tmp_path, capsys):
    text = README.read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'flowft.load_policy("runs/ogpo-plus-ca-toy-s0-.../")' in code
    ckpt = make_bc_checkpoint(tmp_path / "bc", steps=50)  # a toy BC checkpoint stands in for the run dir
    exec(compile(code.replace("runs/ogpo-plus-ca-toy-s0-.../", str(ckpt)), "README.md", "exec"), {})
    assert re.fullmatch(r"success: (True|False)\n", capsys.readouterr().out)
