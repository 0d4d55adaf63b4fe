"""framefill: video frame interpolation (FILM-style and ConvLSTM models) from the command line and from Python.

The Python API (``framefill.api``)::

    import framefill

    model = framefill.load_model("film")  # the shipped weights, or a .safetensors path
    framefill.interpolate_video("clip.mp4", "smooth.mp4", factor=2, model=model)
    mid = framefill.interpolate_pair("a.png", "b.png", t=0.5, model=model)  # (H, W, 3) uint8 RGB

Its names are imported on first use: ``import framefill`` alone (as the command line does before it has checked
its arguments) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "interpolate_video": "framefill.api",
    "interpolate_pair": "framefill.api",
    "load_model": "framefill.api",
    "VideoError": "framefill.frames",
    "WeightsError": "framefill.checkpoint",
}
__all__ = ["VideoError", "WeightsError", "__version__", "interpolate_pair", "interpolate_video", "load_model"]

if TYPE_CHECKING:
    from framefill.api import interpolate_pair, interpolate_video, load_model
    from framefill.checkpoint import WeightsError
    from framefill.frames import VideoError


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'framefill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
