"""Tiled inference: a model call too big for the memory budget runs in overlapping tiles, blended without seams.

The two-frame scheduler (``pairs.py``) hands every model call to a ``Tiler``. A call whose estimated working memory
fits the budget runs whole; one whose pairs fit one by one runs in smaller batches (exactly the same result);
otherwise every (padded) frame is cut into overlapping tiles, the model runs on batches of tiles, and the tile
outputs are blended.

The budget and the estimate of what a call needs are ``framefill.memory``'s (``device_headroom``,
``bytes_per_pixel``); this module plans and runs the tiles they call for.

Tiles. Sizes are multiples of the model's divisor and tile origins are too, so a tile's image pyramid sits on
the whole frame's pyramid grid. The layout (``plan_grid``) is the one that computes the fewest pixels among
those whose tiles fit: full-height strips where they fit, else near-square tiles. Neighbours overlap by at
least ``overlap`` pixels, by default the model's largest motion (``model.config.max_motion``: 252 px for
``film-s``, so 256; 128 without one), kept within 2 divisors .. 256 px. Flow near a tile's inner edge has no
context beyond it: motion that brings content from outside the tile is missed there. The trade-off: an overlap
O costs about ``(T / (T - O))**2`` times the work of untiled inference for T px tiles (1.3x for 2048 px tiles
at O = 256), and a smaller one risks visible seams where motion is large. When the budget only fits tiles too
small for the overlap, it is halved (down to one divisor) with a warning.

Blending. Each tile weighs its pixels by a raised cosine across the middle half of each overlap with a
neighbour: 0 on the quarter next to its own edge (pixels with the least context), rising to 1 over the next half,
and 1 elsewhere, up to the frame border. Two neighbours' ramps are mirror images and sum to one; the 1-D weights
are still normalised by their sum along each axis, and the 2-D weight of a tile is the outer product of its row
and column weights, so the weights sum to exactly one at every pixel. A model whose output depends on a
neighbourhood of radius r gives exactly the untiled result wherever ``overlap / 4 >= r``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from framefill.memory import SKIP_PROBE_BYTES_PER_PIXEL, bytes_per_pixel, device_headroom, format_bytes

log = logging.getLogger(__name__)

FRAME_ITEMSIZE = 4  # bytes per value of the input crops: the runners give float32 frames in any precision
DEFAULT_OVERLAP = 128  # overlap for models that state no max_motion
MAX_AUTO_OVERLAP = 256  # cap on the automatic overlap
ACCUMULATOR_BYTES = 12  # per frame pixel of a tiled call: the fp32 (3, H, W) sum of weighted tiles
BLEND_BYTES = 24  # per tile pixel: the tile output in fp32 and its weighted copy, while it is added

Forward = Callable[[torch.Tensor, torch.Tensor, list], torch.Tensor]  # (x0, x1, times) -> frames


@dataclass(frozen=True)
class TileConfig:
    max_memory: int | None = None  # working memory of one model call, bytes (None: what the device has free)
    tile: int | None = None  # force square tiles of this many px (rounded to the model's multiple), whatever the memory
    overlap: int | None = None  # px shared by neighbouring tiles (None: the model's max_motion, 2 divisors..256)

    def __post_init__(self) -> None:
        for name in ("max_memory", "tile"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if self.overlap is not None and (not isinstance(self.overlap, int) or self.overlap < 0):
            raise ValueError(f"overlap must be a whole number >= 0, got {self.overlap!r}")


def default_overlap(model: torch.nn.Module, divisor: int) -> int:
    """The model's stated largest motion (``model.config.max_motion``), within 2 divisors .. 256 px."""
    motion = getattr(getattr(model, "config", None), "max_motion", None)
    overlap = motion if isinstance(motion, int) and motion > 0 else DEFAULT_OVERLAP
    overlap = min(max(overlap, 2 * divisor), max(MAX_AUTO_OVERLAP, 2 * divisor))
    return math.ceil(overlap / divisor) * divisor


# --- geometry ---------------------------------------------------------------------------------------------------


def axis_starts(length: int, tile: int, overlap: int, align: int) -> tuple[int, ...] | None:
    """Origins of the fewest ``tile``-px tiles covering ``length`` px, multiples of ``align``, spread evenly, with
    neighbours sharing at least ``overlap`` px; None when ``tile`` leaves no room for that."""
    if tile >= length:
        return (0,)
    if tile - overlap < align:
        return None
    units = (length - tile) // align  # the last origin, in steps of align (length and tile are multiples of it)
    n = max(2, math.ceil((length - overlap) / (tile - overlap)))
    while True:
        starts = tuple((2 * k * units + n - 1) // (2 * (n - 1)) * align for k in range(n))  # rounded k*units/(n-1)
        if tile - max(b - a for a, b in zip(starts, starts[1:], strict=False)) >= overlap:
            return starts
        n += 1


def _ramp(u: np.ndarray) -> np.ndarray:
    return (1 - np.cos(np.pi * np.clip(u, 0, 1))) / 2


def axis_weights(tile: int, starts: tuple[int, ...]) -> np.ndarray:
    """``(len(starts), tile)`` blending weights along one axis; at every position the tiles there sum to 1."""
    x = np.arange(tile) + 0.5  # pixel centres
    raw = np.ones((len(starts), tile))
    for k, start in enumerate(starts):
        if k > 0 and (shared := starts[k - 1] + tile - start) > 0:  # rise over the middle half of the overlap
            raw[k] *= _ramp((x - shared / 4) / (shared / 2))
        if k + 1 < len(starts) and (shared := start + tile - starts[k + 1]) > 0:
            raw[k] *= _ramp((tile - x - shared / 4) / (shared / 2))
    total = np.zeros(starts[-1] + tile)
    for k, start in enumerate(starts):
        total[start:start + tile] += raw[k]
    return np.stack([raw[k] / total[start:start + tile] for k, start in enumerate(starts)])


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile_h`` x ``tile_w`` px at origins ``ys`` x ``xs`` covering a ``height`` x ``width`` frame."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def overlap(self) -> int:
        """The smallest overlap of two neighbours (the frame size along an axis with one tile)."""
        gaps = [self.tile_h - (b - a) for a, b in zip(self.ys, self.ys[1:], strict=False)]
        gaps += [self.tile_w - (b - a) for a, b in zip(self.xs, self.xs[1:], strict=False)]
        return min(gaps, default=max(self.height, self.width))

    def boxes(self) -> Iterator[tuple[int, int, int, int]]:
        """``(row index, column index, y, x)`` of every tile."""
        for i, y in enumerate(self.ys):
            for j, x in enumerate(self.xs):
                yield i, j, y, x

    def weights(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Row weights ``(len(ys), tile_h)`` and column weights ``(len(xs), tile_w)``, float32: tile (i, j) weighs
        its pixels by ``rows[i][:, None] * cols[j][None, :]``. Built once per grid and device (a video asks for
        the same grid on every call)."""
        return _grid_weights(self, str(device))

    @classmethod
    def uniform(cls, height: int, width: int, tile: int, overlap: int, align: int) -> TileGrid:
        """Square tiles of ``tile`` px (or the frame's side, if smaller) overlapping by at least ``overlap``."""
        th, tw = min(tile, height), min(tile, width)
        ys, xs = axis_starts(height, th, overlap, align), axis_starts(width, tw, overlap, align)
        assert ys is not None and xs is not None, "tile - overlap must be at least align"
        return cls(height, width, th, tw, ys, xs)


@functools.lru_cache(maxsize=8)
def _grid_weights(grid: TileGrid, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.from_numpy(axis_weights(grid.tile_h, grid.ys)).float().to(device)
    cols = torch.from_numpy(axis_weights(grid.tile_w, grid.xs)).float().to(device)
    return rows, cols


def plan_grid(height: int, width: int, max_pixels: int, overlap: int, align: int) -> TileGrid | None:
    """The tile layout computing the fewest pixels whose tiles have at most ``max_pixels`` px; None if none does.

    ``height`` and ``width`` are multiples of ``align``; so are the tile sizes and origins.
    """
    best: tuple[tuple[int, int], TileGrid] | None = None
    for tile_h in range(align, height + 1, align):
        tile_w = min(width, max_pixels // tile_h // align * align)
        if tile_w < align:
            break
        ys, xs = axis_starts(height, tile_h, overlap, align), axis_starts(width, tile_w, overlap, align)
        if ys is None or xs is None:
            continue
        cost = (len(ys) * tile_h * len(xs) * tile_w, len(ys) * len(xs))
        if best is None or cost < best[0]:
            best = (cost, TileGrid(height, width, tile_h, tile_w, ys, xs))
    return None if best is None else best[1]


def run_tiles(forward: Forward, x0: torch.Tensor, x1: torch.Tensor, times: list, grid: TileGrid,
              per_call: int) -> torch.Tensor:
    """``forward`` on every tile of every pair, ``per_call`` tiles a call, blended into whole frames.

    Shape:
        x0, x1: ``(B, 3, H, W)`` with ``(H, W) == (grid.height, grid.width)``; output: ``(B, C, H, W)`` in x0's
        dtype, with ``C`` the channels ``forward`` returns (3, or more with the ``--debug`` maps after them).
    """
    rows, cols = grid.weights(x0.device)
    out: torch.Tensor | None = None  # (B, C, H, W): C from the model's output (more than 3 with --debug maps)
    th, tw = grid.tile_h, grid.tile_w
    work = [(b, *box) for b in range(x0.shape[0]) for box in grid.boxes()]
    for start in range(0, len(work), per_call):
        chunk = work[start:start + per_call]
        a = torch.cat([x0[b:b + 1, :, y:y + th, x:x + tw] for b, _, _, y, x in chunk])  # (k, 3, th, tw)
        c = torch.cat([x1[b:b + 1, :, y:y + th, x:x + tw] for b, _, _, y, x in chunk])
        made = forward(a, c, [times[b] for b, *_ in chunk])  # (k, C, th, tw)
        if out is None:
            out = torch.zeros((x0.shape[0], made.shape[1], *x0.shape[2:]), device=x0.device, dtype=torch.float32)
        for k, (b, i, j, y, x) in enumerate(chunk):
            out[b, :, y:y + th, x:x + tw] += made[k].float() * (rows[i][:, None] * cols[j][None, :])
        del a, c, made  # before the next chunk's crops: the estimate counts one chunk at a time
    assert out is not None  # a grid has at least one tile
    return out.to(x0.dtype)


# --- the decision -----------------------------------------------------------------------------------------------


class Tiler:
    """Runs each model call whole, in smaller batches or in tiles, so that it fits the memory budget.

    ``forward(x0, x1, times)`` is the counted model call; ``probe(x0, x1)`` an uncounted one for the measurement.
    ``on_tiles(frames, tiles)`` is told of every tiled call.
    """

    def __init__(self, model: torch.nn.Module, forward: Forward, probe: Callable[[torch.Tensor, torch.Tensor], object],
                 device: torch.device, dtype: torch.dtype, divisor: int, config: TileConfig,
                 on_tiles: Callable[[int, int], None] | None = None) -> None:
        self.model, self.forward, self.probe = model, forward, probe
        self.device, self.dtype, self.divisor, self.config = device, dtype, divisor, config
        self.on_tiles = on_tiles
        self.overlap = default_overlap(model, divisor) if config.overlap is None else config.overlap
        self._said: set[str] = set()

    def budget(self) -> int:
        """Bytes the next call may use: ``max_memory``, at most what the device has free less a margin."""
        headroom = device_headroom(self.device)
        return headroom if self.config.max_memory is None else min(self.config.max_memory, headroom)

    def pixel_cost(self) -> float:
        """Bytes per pixel of one pair in a call: the model's measured working memory and the input crops."""
        return bytes_per_pixel(self.model, self.probe, self.device, self.dtype, self.divisor) + 6 * FRAME_ITEMSIZE

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor, times: list) -> torch.Tensor:
        n, _, h, w = x0.shape
        budget = self.budget()
        if self.config.tile is not None:
            grid = self._forced_grid(h, w)
        else:
            if n * h * w * SKIP_PROBE_BYTES_PER_PIXEL <= budget:
                return self.forward(x0, x1, times)
            pair = h * w * self.pixel_cost()
            if n * pair <= budget:
                return self.forward(x0, x1, times)
            if pair <= budget:  # pairs one batch at a time: the same frames
                k = int(budget // pair)
                return torch.cat([self.forward(x0[s:s + k], x1[s:s + k], times[s:s + k]) for s in range(0, n, k)])
            grid = self._fitted_grid(h, w, budget, reserved=n * h * w * ACCUMULATOR_BYTES)
        if len(grid) == 1:
            return self.forward(x0, x1, times)
        per_call = self._tiles_per_call(grid, n, budget)
        self._say("info", f"{w}x{h} frames in {len(grid)} tiles of {grid.tile_w}x{grid.tile_h} (overlap "
                          f"{grid.overlap} px), {per_call} a call, in a budget of {format_bytes(budget)}",
                  key=f"{grid}")
        out = run_tiles(self.forward, x0, x1, times, grid, per_call)
        if self.on_tiles:
            self.on_tiles(n, n * len(grid))
        return out

    def _forced_grid(self, h: int, w: int) -> TileGrid:
        div = self.divisor
        tile = max(2 * div, self.config.tile // div * div)
        overlap = min(self.overlap, tile // 2 // div * div)
        if overlap < self.overlap:
            self._say("warning", f"tiles of {tile} px leave room for an overlap of only {overlap} px (wanted "
                                 f"{self.overlap}); seams may show where the motion is larger")
        return TileGrid.uniform(h, w, tile, overlap, div)  # tile - overlap >= div by construction

    def _fitted_grid(self, h: int, w: int, budget: float, reserved: float = 0.0) -> TileGrid:
        """The cheapest layout whose single tile fits ``budget`` less the ``reserved`` bytes (the whole frames the
        tiles are summed into); the overlap shrinks if it must (with a warning)."""
        div, cost = self.divisor, self.pixel_cost() + BLEND_BYTES
        max_pixels = int(max(0.0, budget - reserved) // cost)
        overlap = self.overlap
        while True:
            grid = plan_grid(h, w, max_pixels, overlap, div)
            if grid is not None or overlap <= div:
                break
            overlap = max(div, overlap // 2 // div * div)
        if grid is None:  # not even the smallest tiles fit: run the smallest, over budget
            need = 4 * div * div * cost + reserved
            self._say("warning", f"a memory budget of {format_bytes(budget)} is less than the smallest tiles of "
                                 f"these frames need ({format_bytes(need)}); running over it", key="over budget")
            return TileGrid.uniform(h, w, 2 * div, div, div)
        if overlap < self.overlap:
            self._say("warning", f"the memory budget fits tiles of {grid.tile_w}x{grid.tile_h} px with an overlap "
                                 f"of {overlap} px only (wanted {self.overlap}); seams may show where the motion is "
                                 "larger: raise --max-memory", key=f"overlap {grid}")
        return grid

    def _tiles_per_call(self, grid: TileGrid, n: int, budget: int) -> int:
        tiles = n * len(grid)
        left = budget - n * grid.height * grid.width * ACCUMULATOR_BYTES
        tile_px = grid.tile_h * grid.tile_w
        if tiles * tile_px * SKIP_PROBE_BYTES_PER_PIXEL <= left:
            return tiles
        return max(1, min(tiles, int(left // (tile_px * (self.pixel_cost() + BLEND_BYTES)))))

    def _say(self, level: str, message: str, key: str | None = None) -> None:
        """Log ``message`` once per Tiler and ``key`` (default: the message): every call of a job would repeat it."""
        key = message if key is None else key
        if key not in self._said:
            self._said.add(key)
            getattr(log, level)(message)
