"""mp4 writing through imageio + imageio-ffmpeg (the [video] extra bundles ffmpeg; no system ffmpeg needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from flowft.errors import ConfigError


def check_video_extra(flag: str = "--video") -> None:
    """Videos need imageio + imageio-ffmpeg: checked before evaluating or training, not after."""
    missing = [m for m in ("imageio", "imageio_ffmpeg") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{flag} needs the [video] extra (missing {', '.join(missing)}): "
                          "pip install 'flowft[video]'")


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: int = 20) -> Path:
    try:
        import imageio.v2 as imageio
    except ImportError as err:  # pragma: no cover - depends on the extra
        raise ImportError("video needs the [video] extra: pip install 'flowft[video]'") from err
    if not frames:
        raise ValueError("no frames to write (did the env render?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, [np.asarray(f, np.uint8) for f in frames], fps=fps, macro_block_size=1)
    return path
