"""Pictures of how the model made each in-between frame, for ``framefill interp --debug DIR``.

What the scheduler hands out. With a ``on_debug`` callback, ``interpolate_frames`` and ``interpolate_pair`` ask the
model for its auxiliary outputs (``forward(..., return_aux=True)``) and call back once per frame the model made,
with a ``ModelFrame``: where it lies (input pair and time), which output frames it is, and its maps
(``AUX_MAPS``, cropped to the frame's size, float32 on the CPU):

- ``flow10``: the flow from frame 1's grid into frame 0 (frame 0 is warped by ``t * flow10``), ``(2, H, W)`` px;
- ``flow01``: the flow from frame 0's grid into frame 1 (frame 1 is warped by ``(1 - t) * flow01``): for an
  object moving right it points right;
- ``mask``: the fusion's blend mask, the weight of warped frame 0 against warped frame 1 (1: all frame 0);
- ``fallback``: the weight given to the plain blend of the inputs where the warped frames disagree (1: all blend).

"Frame 0" and "frame 1" are the two frames of that model call: the input pair, or for a time reached by recursive
halving, the two frames the call bisected. A map the model does not give (another model, a switched-off
fallback) is NaN and gets no picture. A tiled model call's maps are blended from its tiles with the tiles' own
weights, like its frame (``framefill.tiling``), so they are whole-frame maps too. They cost memory the tiler's
budget does not count: ``AUX_CHANNELS`` more channels beside each frame of a call, 3x its blending accumulator.

The pictures (``pictures``): flows in the Middlebury colour coding of Baker et al. (hue = direction: right red,
down yellow, left cyan, up blue-violet; saturation = length, white = still), both directions of one call
on one scale, full saturation at the longer of their largest motions but at least ``MIN_FLOW_SCALE`` px (so that
sub-pixel noise on a still shot stays pale); masks as greyscale (0 black, 1 white).

Names (``DebugWriter``): ``out{k:06d}_at{i:06d}.{tttt}_{picture}.png`` for output frame ``k`` (counted from 0, as
ffmpeg's ``select=eq(n\\,k)`` counts), made between input frames ``i`` and ``i + 1`` (counted from 0) at time
``0.tttt`` (four decimals, rounded down); for example ``out000006_at000003.5000_flow01.png``. A frame the
recursion made on the way that is no output (t = 1/2 and 1/4 when ``--fps`` asks for t = 3/8) is
``step_at{i:06d}.{tttt}_{picture}.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from framefill.frames import CommitOnExit, FrameFolderWriter

log = logging.getLogger(__name__)

AUX_MAPS = (("flow10", 2), ("flow01", 2), ("mask", 1), ("fallback", 1))  # (name, channels), in channel order
AUX_CHANNELS = sum(c for _, c in AUX_MAPS)
MIN_FLOW_SCALE = 1.0  # px: flows shorter than this never reach full saturation
PICTURES = ("flow01", "flow10", "mask", "fallback")


@dataclass(frozen=True)
class ModelFrame:
    """One frame the model made, with its maps (see the module docstring)."""

    pair: int  # it lies between input frames pair and pair + 1 (counted from 0) ...
    t: Fraction  # ... at this time in (0, 1)
    outputs: tuple[int, ...]  # the output frames it is (counted from 0); empty for a step of the recursion
    maps: torch.Tensor  # (AUX_CHANNELS, H, W) float32 on the CPU: the AUX_MAPS in order, NaN where missing


def pack_aux(aux: Mapping[str, object] | None, n: int, size: tuple[int, int]) -> torch.Tensor:
    """The ``AUX_MAPS`` of a film-style model's ``return_aux`` dict as one ``(n, AUX_CHANNELS, H, W)`` float32
    tensor at ``size`` (what travels through the tiler beside the frames); NaN for what is missing or None."""
    h, w = size
    parts = []
    flows = aux.get("flows") if aux else None
    finest = flows[0] if isinstance(flows, list | tuple) and flows else None
    if isinstance(finest, torch.Tensor) and finest.dim() == 4 and finest.shape[:2] == (2 * n, 2):
        parts += [_resized_flow(finest[:n], size), _resized_flow(finest[n:], size)]
    else:
        parts += [None, None]
    for name in ("mask", "fallback"):
        value = aux.get(name) if aux else None
        ok = isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[:2] == (n, 1)
        parts.append(_resized(value.float(), size) if ok else None)  # type: ignore[union-attr]
    device = next((p.device for p in parts if p is not None), torch.device("cpu"))
    filled = [torch.full((n, c, h, w), float("nan"), device=device) if p is None else p.float()
              for p, (_, c) in zip(parts, AUX_MAPS, strict=True)]
    return torch.cat(filled, dim=1)  # (n, AUX_CHANNELS, h, w)


def _resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear",
                                                                        align_corners=False)


def _resized_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A flow of a coarser level at ``size``, its values scaled with it (flows are in pixels of their level)."""
    h, w = flow.shape[-2:]
    out = _resized(flow.float(), size)
    if (h, w) != tuple(size):
        out = out * torch.tensor([size[1] / w, size[0] / h], device=out.device).view(1, 2, 1, 1)
    return out


# --- colour coding -----------------------------------------------------------------------------------------------


def _wheel() -> np.ndarray:
    """The Middlebury flow colour wheel, ``(55, 3)`` float in [0, 1]: red, yellow, green, cyan, blue, magenta and
    back to red, in segments of 15, 6, 4, 11, 13 and 6 hues (more hues where the eye tells them apart better)."""
    stops = [((1, 0, 0), 15), ((1, 1, 0), 6), ((0, 1, 0), 4), ((0, 1, 1), 11), ((0, 0, 1), 13), ((1, 0, 1), 6)]
    rows = []
    for k, (start, count) in enumerate(stops):
        end = np.array(stops[(k + 1) % len(stops)][0], dtype=np.float64)
        for step in range(count):
            rows.append(np.array(start) + (end - np.array(start)) * step / count)
    return np.stack(rows)


WHEEL = _wheel()


def flow_to_rgb(flow: np.ndarray | torch.Tensor, scale: float | None = None) -> np.ndarray:
    """A ``(2, H, W)`` flow (channel 0 = dx, pixels) as an ``(H, W, 3)`` uint8 RGB picture in the Middlebury colour
    coding: the hue gives the direction, the saturation the length, full at ``scale`` px (default: the largest
    length, at least ``MIN_FLOW_SCALE``); longer vectors (``scale`` given) are darkened instead."""
    flow = flow.numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    u, v = flow[0].astype(np.float64), flow[1].astype(np.float64)
    radius = np.hypot(u, v)
    if scale is None:
        scale = max(float(radius.max(initial=0.0)), MIN_FLOW_SCALE)
    radius = radius / scale
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(WHEEL) - 1)  # right: 0 (or the end), left: the middle
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % len(WHEEL)
    frac = (position - k0)[..., None]
    colour = (1 - frac) * WHEEL[k0] + frac * WHEEL[k1]  # (H, W, 3)
    r = radius[..., None]
    picture = np.where(r <= 1, 1 - r * (1 - colour), colour * 0.75)
    return (picture * 255).round().clip(0, 255).astype(np.uint8)


def grey_to_rgb(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A ``(1, H, W)`` or ``(H, W)`` map in [0, 1] as an ``(H, W, 3)`` uint8 greyscale picture."""
    x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    grey = (np.clip(x.reshape(x.shape[-2:]), 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def pictures(maps: torch.Tensor, flow_scale: float | None = None) -> dict[str, np.ndarray]:
    """The pictures (``PICTURES``) of one ``ModelFrame.maps``, leaving out maps that are missing (NaN).

    Both flows share one scale: ``flow_scale`` px, or the longer of their largest motions (at least
    ``MIN_FLOW_SCALE``).
    """
    split = dict(zip([n for n, _ in AUX_MAPS], torch.split(maps.float().cpu(), [c for _, c in AUX_MAPS]),
                     strict=True))
    have = {name: value for name, value in split.items() if bool(torch.isfinite(value).all())}
    flows = [have[name] for name in ("flow01", "flow10") if name in have]
    if flow_scale is None and flows:
        longest = max(float(torch.linalg.vector_norm(f, dim=0).max()) for f in flows)
        flow_scale = max(longest, MIN_FLOW_SCALE)
    out = {}
    for name in PICTURES:
        if name in have:
            out[name] = flow_to_rgb(have[name], flow_scale) if name.startswith("flow") else grey_to_rgb(have[name])
    return out


# --- naming and writing ------------------------------------------------------------------------------------------


def picture_stems(frame: ModelFrame) -> list[str]:
    """The file name stems of a model frame's pictures: one per output frame it is, or one ``step_`` stem."""
    at = f"at{frame.pair:06d}.{int(frame.t * 10000):04d}"  # rounded down: never .10000
    if not frame.outputs:
        return [f"step_{at}"]
    return [f"out{k:06d}_{at}" for k in frame.outputs]


class DebugWriter(CommitOnExit):
    """Writes the pictures of every ``ModelFrame`` it is called with into the folder ``path``, atomically.

    The pictures go into a hidden temporary folder beside ``path``, renamed onto it by ``close()`` (as frame folder
    outputs are: ``FrameFolderWriter``); ``abort()``, or an exception in a ``with`` block, deletes them. An existing
    non-empty ``path`` is replaced only with ``overwrite``, and only if it holds nothing but images.

    Raises:
        VideoError: if ``path`` is a file, exists without ``overwrite``, or its folder is missing or unwritable.
    """

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self._folder = FrameFolderWriter(self.path, overwrite=overwrite)
        self.model_frames = 0  # ModelFrames seen
        self.pictures_written = 0
        self._said_nothing = False

    def __call__(self, frame: ModelFrame) -> None:
        self.model_frames += 1
        made = pictures(frame.maps)
        if not made and not self._said_nothing:
            self._said_nothing = True
            log.warning("the model gives no flow, mask or fallback maps: %s stays empty", self.path)
        for stem in picture_stems(frame):
            for name, image in made.items():
                self._folder.write_named(f"{stem}_{name}.png", image)
                self.pictures_written += 1

    def close(self) -> None:
        """Move the pictures onto ``path``."""
        self._folder.close()

    def abort(self) -> None:
        """Delete the pictures written so far; ``path`` is left as it was."""
        self._folder.abort()
