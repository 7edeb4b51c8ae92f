"""`flowft info`: what is installed and usable on this machine."""

from __future__ import annotations

import importlib.util
import os
import platform

import numpy as np
import torch

from flowft import __version__
from flowft.registry import ALGORITHMS, TASKS, algorithm_names, task_names


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def info_text() -> str:
    tasks, algos = task_names(), algorithm_names()
    lines = [
        f"flowft {__version__}  python {platform.python_version()}  torch {torch.__version__}  numpy {np.__version__}",
        f"devices: cpu ({torch.get_num_threads()} threads)" + (f", cuda x{torch.cuda.device_count()} "
                                                              f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ", cuda: not available"),
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')}",
        "simulators: " + ", ".join(f"{m}={'yes' if _has(m) else 'no'}" for m in ("mujoco", "robosuite", "gymnasium_robotics")),
        "extras: " + ", ".join(f"{m}={'yes' if _has(m) else 'no'}" for m in ("imageio", "tensorboard", "wandb", "minari")),
        "tasks:",
    ]
    for t in tasks:
        spec = TASKS[t]
        extra = f"  (needs flowft[{spec.extra}])" if spec.extra else ""
        lines.append(f"  {t:<20s} H={spec.chunk_len} K={spec.denoise_steps} gamma={spec.gamma}{extra}")
    lines.append("algorithms:")
    lines += [f"  {a:<14s} {ALGORITHMS[a].doc}" for a in algos]
    return "\n".join(lines)
