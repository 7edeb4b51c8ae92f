"""Reuse of compiled MuJoCo models across robosuite rebuilds: an exact speed-up of seeded resets.

A reset with a new seed rebuilds the robosuite model (robosuite_tasks.py: an episode depends on its reset seed
alone): every demo episode, every env's first episode of an evaluation or a run, every env build. Each rebuild
compiled two XML strings with MuJoCo: the robot's own model, which robosuite compiles to inspect it and which is the
same XML at every rebuild, and the scene, which is the same XML for every seed on Can and Square (Lift's cube size
changes it). MuJoCo's compiler is deterministic, so a model compiled from an identical XML string is reused; every
caller gets its own copy (`copy.copy` of an MjModel is a deep copy: robosuite writes into its model, e.g.
`opt.timestep`). A new-seed reset took 1.02 -> 0.66 s on Lift and 1.12 -> 0.15 s on Can (2026-12-02, AMD EPYC, one
core, benchmarks/reset_speed.py; raw output docs/results/learner-speed-2026-12-02-amd/reset.txt).
tests/sim/test_robosuite_cache.py checks that episodes are bit-identical with and without the cache.

`install()` patches the two robosuite entry points that compile (`MujocoXML.get_model`, `MjSim.from_xml_string`);
`flowft.envs.robosuite_tasks.require_robosuite` calls it once.
"""

from __future__ import annotations

import copy
import functools

CACHE_SIZE = 8
"""Distinct XML strings kept compiled per process (the robot's and a few scenes; Lift's scenes rarely repeat)."""


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(xml: str):
    import mujoco

    return mujoco.MjModel.from_xml_string(xml)


def compiled_model(xml: str):
    """A private copy of the MjModel compiled from `xml` (compiled once per distinct string)."""
    return copy.copy(_compile(xml))


def clear() -> None:
    """Forget every compiled model (the next rebuild compiles afresh)."""
    _compile.cache_clear()


def stats() -> tuple[int, int]:
    """(hits, compilations) so far in this process."""
    info = _compile.cache_info()
    return info.hits, info.misses


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
