"""Exhaustive fault injection on checkpoints (issue 19, items 5 and 6), `-m slow`, about 5 minutes on 2 cores.

Every file of the newest checkpoint of a toy run (640; the previous one is 320) is damaged each way: bytes flipped
in its header, middle and last byte, its last byte cut, emptied, deleted, and a digit edited in its JSON (the
header JSON for safetensors files) keeping its size. Each damage must be detected, named in a warning, and the run
must resume from 320 and finish with weights bit-identical to the undamaged run's. The figures are printed:

    pytest tests/test_checkpoint_faults_slow.py -m slow -s
"""

import re
import shutil
import struct
import warnings

import pytest
import torch
from safetensors.torch import load_file

from flowft.train.loop import Trainer
from flowft.utils.checkpoint import latest_checkpoint
from flowft.utils.manifest import MANIFEST, CheckpointWarning
from helpers import make_bc_checkpoint, tiny_train_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # 63 damaged runs resumed to the end

WAYS = ("flip header", "flip middle", "flip last", "truncate", "zero-length", "delete", "edit JSON")


def _edit_digit(data: bytes, lo: int, hi: int) -> bytes:
    """Change one digit in data[lo:hi] (the middle one), keeping the size: an edit by hand or a silent bit rot
    that leaves the file parseable."""
    digits = [m.start() + lo for m in re.finditer(rb"\d", data[lo:hi])]
    i = digits[len(digits) // 2]
    return data[:i] + bytes([ord("1") if data[i] != ord("1") else ord("2")]) + data[i + 1:]


def damage(path, way):
    data = path.read_bytes()
    if way.startswith("flip"):
        i = {"flip header": min(10, len(data) - 1), "flip middle": len(data) // 2, "flip last": len(data) - 1}[way]
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif way == "truncate":
        path.write_bytes(data[:-1])
    elif way == "zero-length":
        path.write_bytes(b"")
    elif way == "delete":
        path.unlink()
    elif path.suffix == ".safetensors":  # edit the JSON header (shapes, offsets, metadata such as the buffer's total)
        n = struct.unpack("<Q", data[:8])[0]
        path.write_bytes(_edit_digit(data, 8, 8 + n))
    elif path.name == "state.json":  # the inconsistent state: env_steps of another checkpoint
        path.write_text(path.read_text().replace('"env_steps": 640', '"env_steps": 960'))
    else:
        path.write_bytes(_edit_digit(data, 0, len(data)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    bc = make_bc_checkpoint(tmp_path_factory.mktemp("bc"))
    cfg = tiny_train_config(bc, tmp_path_factory.mktemp("runs"), run_name="ref")
    t = Trainer(cfg)
    t.run()
    final = load_file(str(t.run_dir / "checkpoints" / "0000000640" / "model.safetensors"))
    return cfg, t.run_dir, final


def _one_case(cfg, src, final, tmp, rel, way) -> dict:
    run_dir = tmp / "run"
    shutil.copytree(src, run_dir)
    bad = run_dir / "checkpoints" / "0000000640" / rel
    damage(bad, way)
    out = {"detected": False, "named": False, "resumed": False, "identical": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = latest_checkpoint(run_dir)
    msgs = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    out["detected"] = found.name == "0000000320" and any("0000000640" in m for m in msgs)
    # every message about a data file names the manifest too: the damaged file itself must be named
    out["named"] = any(str(bad) in m for m in msgs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        t = Trainer(cfg, run_dir=run_dir, resume=True)
        out["resumed"] = t.env_steps == 320
        t.run()
    again = load_file(str(run_dir / "checkpoints" / "0000000640" / "model.safetensors"))
    out["identical"] = again.keys() == final.keys() and all(torch.equal(final[k], again[k]) for k in final)
    shutil.rmtree(run_dir)
    return out


def test_every_corruption_of_every_checkpoint_file_is_detected_and_survived(reference, tmp_path, capsys):
    cfg, src, final = reference
    ckpt = src / "checkpoints" / "0000000640"
    files = sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file())
    assert MANIFEST in files and "buffer.safetensors" in files and len(files) == 9
    results = {(rel, way): _one_case(cfg, src, final, tmp_path, rel, way) for rel in files for way in WAYS}
    total = len(results)
    counts = {k: sum(r[k] for r in results.values()) for k in ("detected", "named", "resumed", "identical")}
    with capsys.disabled():
        print(f"\ncheckpoint corruptions ({len(files)} files x {len(WAYS)} ways): detected {counts['detected']}/"
              f"{total}, damaged file named {counts['named']}/{total}, resumed from the previous good checkpoint "
              f"{counts['resumed']}/{total}, finished bit-identical to the undamaged run {counts['identical']}/{total}")
    failed = {f"{rel} {way}": r for (rel, way), r in results.items() if not all(r.values())}
    assert not failed, failed
