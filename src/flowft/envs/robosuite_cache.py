"""Reuse of compiled MuJoCo models across robosuite rebuilds: an exact speed-up of seeded resets.

A reset with a new seed rebuilds the robosuite model (robosuite_tasks.py: an episode depends on its reset seed
alone): every demo episode, every env's first episode of an evaluation or a run, every env build. Each rebuild
compiled two XML strings with MuJoCo: the robot's own model, which robosuite compiles to inspect it and which is the
same XML at every rebuild, and the scene, which is the same XML for every seed on Can and Square (Lift's cube size
changes it). MuJoCo's compiler is deterministic, so a model compiled from an XML string that comes back is reused; every
caller gets its own copy (`copy.copy` of an MjModel is a deep copy: robosuite writes into its model, e.g.
`opt.timestep`). A new-seed reset took 1.02 -> 0.66 s on Lift and 1.12 -> 0.15 s on Can (2026-12-02, AMD EPYC, one
core, benchmarks/reset_speed.py; raw output docs/results/learner-speed-2026-12-02-amd/reset.txt).
tests/sim/test_robosuite_cache.py checks that episodes are bit-identical with and without the cache.

Memory: a compiled robosuite model holds its meshes and textures, ~60 MB on Lift, so only strings seen a second time
are kept (the robot's; Can's and Square's scene), at most CACHE_SIZE of them. Lift's scenes, new at almost every
seed, are compiled and handed out as before. Keeping every string (the first version, 8 per process) cost each env
worker up to ~500 MB, and two quickstarts side by side (12 env workers each) ran a 24 GiB machine out of memory.

`install()` patches the two robosuite entry points that compile (`MujocoXML.get_model`, `MjSim.from_xml_string`);
`flowft.envs.robosuite_tasks.require_robosuite` calls it once.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict

CACHE_SIZE = 3
"""Compiled models kept per process (the robot's and the scene of a task whose scene does not change with the seed)."""
SEEN_SIZE = 64
"""Digests of strings compiled once, remembered so that their second compile is kept (16 bytes each)."""

_kept: OrderedDict[str, object] = OrderedDict()  # XML string -> MjModel, least recently used first
_seen: OrderedDict[bytes, None] = OrderedDict()
_counts = {"hits": 0, "compiles": 0}


def compiled_model(xml: str):
    """An MjModel of `xml` that is the caller's own: a copy of the kept one when this string was compiled before
    and kept, else a fresh compile (kept when the string is seen for the second time)."""
    import mujoco

    model = _kept.get(xml)
    if model is not None:
        _kept.move_to_end(xml)
        _counts["hits"] += 1
        return copy.copy(model)
    _counts["compiles"] += 1
    model = mujoco.MjModel.from_xml_string(xml)
    digest = hashlib.blake2b(xml.encode(), digest_size=16).digest()
    if digest not in _seen:  # first sight: most of Lift's scenes never come back
        _seen[digest] = None
        if len(_seen) > SEEN_SIZE:
            _seen.popitem(last=False)
        return model
    del _seen[digest]  # second sight: this string repeats
    _kept[xml] = model
    if len(_kept) > CACHE_SIZE:
        _kept.popitem(last=False)
    return copy.copy(model)


def clear() -> None:
    """Forget every compiled model and every string seen (the next rebuilds compile afresh)."""
    _kept.clear()
    _seen.clear()
    _counts.update(hits=0, compiles=0)


def stats() -> tuple[int, int]:
    """(hits, compilations) since the last `clear()` in this process."""
    return _counts["hits"], _counts["compiles"]


def kept() -> int:
    """How many compiled models this process keeps now (at most CACHE_SIZE)."""
    return len(_kept)


def install() -> None:
    """Route robosuite's two model compilations through `compiled_model` (idempotent)."""
    from robosuite.models import base
    from robosuite.utils import binding_utils

    if getattr(binding_utils.MjSim, "_flowft_compile_cache", False):
        return

    def get_model(self, mode: str = "mujoco"):
        if mode != "mujoco":  # robosuite's own message for any other mode
            raise ValueError(f"Unkown model mode: {mode}. Available options are: mujoco")
        return compiled_model(self.get_xml())  # get_xml: the same ET.tostring(root) string get_model compiled

    base.MujocoXML.get_model = get_model
    binding_utils.MjSim.from_xml_string = classmethod(lambda cls, xml: cls(compiled_model(xml)))
    binding_utils.MjSim._flowft_compile_cache = True
