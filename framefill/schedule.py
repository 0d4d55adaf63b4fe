"""The scheduling core both schedulers build on: the two-frame one (``framefill.pairs``, recursion over pairs)
and the four-frame one (``framefill.windows``, whole passes); ``framefill.interpolate`` picks between them.

Here: the configuration and statistics of a run, where the outputs sit among the inputs (``Timeline``), how a
time is snapped to what a t = 0.5 model can make, and how a pair of input frames is judged (motion, scene cut or
duplicate) and checked.

Timing. Output frame ``k`` has time ``k / out_fps``, i.e. position ``p = k * in_fps / out_fps`` in input-frame
units (exact ``Fraction`` arithmetic throughout): pair ``i = floor(p)``, time ``t = p - i``. Where ``t == 0`` the
output *is* input frame ``i`` (the same array). With ``N`` inputs and ``r = out_fps / in_fps`` there are
``floor((N - 1) * r) + 1`` outputs, none after the last input: for an integer ``factor`` F exactly
``(N - 1) * F + 1``, the first and last inputs being the first and last outputs. For an fps target the last
input is an output only when an output time lands on it (25 -> 60 fps: every 5th input frame does).
A variable frame rate input may bring its frames' own times (``interpolate_frames(..., times=...)``): output
``k`` is then placed at ``k / out_fps`` among them (``Timeline``), with ``in_fps`` the average rate.

Snapping. A model that knows only ``t = 0.5`` reaches other times by halving: each time is snapped to the
nearest ``j / 2**D`` (``snap_time``; ties go towards 0.5, so ``snap(1 - t) == 1 - snap(t)``), with
``D = max_depth`` (default 3: a 1/8 grid), raised to ``ceil(log2(r))`` when outputs are denser than the grid so
that no two output times snap to one frame (``depth_for``). Timing error: at most ``1 / 2**(D + 1)`` of an input
frame interval (1/16 at D = 3); factors 2, 4, 8 are exact, factor 3 is off by 1/24 (t = 1/3 -> 3/8);
``InterpolationStats.max_timing_error`` reports the worst used.

Scene cuts and duplicates, judged on grey thumbnails at most 64 px wide (values in [0, 1]):
- a cut: mean absolute difference above ``scene_threshold`` (0.10) *and* distance between 32-bin grey
  histograms (total variation, 0..1) above ``scene_hist_threshold`` (0.20). The histogram keeps fast pans
  (large difference, same histogram) from counting; the difference keeps fades, exposure changes and flat
  animation (histogram moved, small difference) from counting. Measured on the clips of the training set
  (``weights/README.md``): motion pairs stay below a difference of 0.08; the five cuts of bikes.mp4 have a difference
  of 0.18 to 0.32 and a histogram distance of 0.249 to 0.71; flat animation (Big Buck Bunny) reaches a
  histogram distance of 0.66 at a difference of 0.03.
- a duplicate: mean absolute difference below ``duplicate_threshold`` (0.5/255) *and* largest difference at
  most ``duplicate_max_diff`` (6/255). Codec noise on static shots (one-by-one-person-detection.mp4,
  bottle-detection.mp4) reaches 6/255 on a thumbnail pixel (2/255 caught a third of those pairs); a 7x7-px
  square of contrast 0.5 moving its own width on a 1080p frame (~6/255 on a thumbnail pixel) is the
  smallest motion still seen.
Neither goes through the model: the in-betweens are copies of the nearer input (``t < 0.5``: the first
frame, else the second), so nothing is ever morphed across a cut.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
import torch

from framefill.tiling import TileConfig

MAX_DEPTH_LIMIT = 10  # up to 1023 model frames per pair; beyond that a model needs arbitrary_time
THUMB_WIDTH = 64  # scene-cut and duplicate tests run on grey thumbnails this wide
HIST_BINS = 32
HALF = Fraction(1, 2)


@dataclass(frozen=True)
class ScheduleConfig:
    factor: int | None = None  # output fps = factor * input fps (>= 2); give this or fps
    fps: Fraction | None = None  # output fps (> input fps); str, int and float are converted to Fraction
    max_depth: int = 3  # bisection depth: times snap to a 1/2**max_depth grid (raised for dense outputs)
    batch_size: int = 4  # model inputs (image pairs) per model call
    scene_threshold: float = 0.10  # cut: thumbnail mean abs difference (0..1) above this ...
    scene_hist_threshold: float = 0.20  # ... and grey-histogram distance (0..1) above this
    duplicate_threshold: float = 0.5 / 255  # duplicate: thumbnail mean abs difference below this ...
    duplicate_max_diff: float = 6 / 255  # ... and largest thumbnail pixel difference at most this
    detect_scenes: bool = True  # copy, never morph, across scene cuts
    skip_duplicates: bool = True  # repeated frames get copies, not model calls
    tiling: TileConfig = TileConfig()  # memory budget per model call; tiles when a call would exceed it

    def __post_init__(self) -> None:
        if (self.factor is None) == (self.fps is None):
            raise ValueError(f"give exactly one of factor and fps (got factor={self.factor}, fps={self.fps})")
        if self.factor is not None:
            check_factor(self.factor)
        if self.fps is not None:
            object.__setattr__(self, "fps", Fraction(self.fps))
            if self.fps <= 0:
                raise ValueError(f"target fps must be > 0, got {self.fps}")
        if not 1 <= self.max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be in 1..{MAX_DEPTH_LIMIT}, got {self.max_depth}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class InterpolationStats:
    frames_in: int = 0
    frames_out: int = 0
    pairs_interpolated: int = 0  # pairs with at least one in-between from the model
    pairs_duplicate: int = 0  # pairs of repeated frames (in-betweens copied, no model call)
    scene_cuts: int = 0  # pairs spanning a scene cut (in-betweens copied)
    model_calls: int = 0  # forward passes
    model_frames: int = 0  # frames the model produced (sum of batch sizes)
    max_timing_error: float = 0.0  # largest |snapped t - exact t| used, in input frame intervals
    tiled_frames: int = 0  # model frames made in tiles (too big for the memory budget, or --tile)
    tiles: int = 0  # tiles those took in all


def check_factor(factor: object) -> None:
    """Refuse a ``factor`` that is not an integer >= 2."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"factor must be an integer >= 2, got {factor!r}")


def slowmo_rates(factor: int | None, fps: Fraction | None, slowmo: int = 1) -> tuple[int | None, Fraction | None]:
    """The ``(factor, fps)`` to interpolate to for ``slowmo`` times slow motion played at ``factor`` or ``fps``
    (1: none): ``slowmo`` times the frames per second of footage. Neither given: factor 2, or ``slowmo`` alone
    (slow motion at the input's own rate)."""
    if fps is not None:
        return None, fps * slowmo
    if factor is None:
        return (slowmo if slowmo > 1 else 2), None
    return factor * slowmo, None


def fps_ratio(in_fps: Fraction | int, factor: int | None, fps: Fraction | None) -> Fraction:
    """``out_fps / in_fps``, validated."""
    in_fps = Fraction(in_fps)
    if in_fps <= 0:
        raise ValueError(f"input fps must be > 0, got {in_fps}")
    if (factor is None) == (fps is None):
        raise ValueError(f"give exactly one of factor and fps (got factor={factor}, fps={fps})")
    if factor is not None:
        check_factor(factor)
        return Fraction(factor)
    fps = Fraction(fps)
    if fps <= in_fps:
        raise ValueError(f"target fps {fps} must be above the input fps {in_fps} (framefill only raises the "
                         "frame rate); pick a higher --fps or use --factor")
    return fps / in_fps


def out_fps_for(in_fps: Fraction | int, config: ScheduleConfig) -> Fraction:
    """The output frame rate, exact."""
    return Fraction(in_fps) * fps_ratio(in_fps, config.factor, config.fps)


class Timeline:
    """Where the input frames sit among the outputs: frame ``i`` at ``pos(i)`` in output-frame units (output ``k``
    sits at ``k``), so the outputs in the pair ``(i, i + 1)`` are the integers in ``[pos(i), pos(i + 1))``.

    At a constant rate ``pos(i) = i * ratio``. With ``times`` (each frame's time in seconds after the first,
    strictly increasing: a variable frame rate video's own timestamps) ``pos(i) = times[i] * out_fps``, so every
    output shows the moment it stands for however unevenly the inputs were spaced; frames past the end of
    ``times`` (a decoder that gave more than were counted) continue at the constant rate.
    """

    def __init__(self, ratio: Fraction, times: Sequence[Fraction] | None = None, out_fps: Fraction | None = None
                 ) -> None:
        if times is not None:
            if out_fps is None or out_fps <= 0:
                raise ValueError("frame times need the output frame rate")
            if not times or times[0] != 0 or any(b <= a for a, b in itertools.pairwise(times)):
                raise ValueError("frame times must start at 0 and increase")
        self.ratio, self.times, self.out_fps = Fraction(ratio), times, out_fps

    def pos(self, i: int) -> Fraction:
        if self.times is None:
            return i * self.ratio
        last = len(self.times) - 1
        if i <= last:
            return self.times[i] * self.out_fps
        return self.times[last] * self.out_fps + (i - last) * self.ratio

    def pair_times(self, i: int) -> list[Fraction]:
        """Exact times ``t`` in [0, 1) of the outputs falling in the pair ``(i, i + 1)``."""
        a, b = self.pos(i), self.pos(i + 1)
        return [(k - a) / (b - a) for k in range(math.ceil(a), math.ceil(b))]

    def ends_on_last(self, n_in: int) -> bool:
        return self.pos(n_in - 1).denominator == 1

    def count(self, n_in: int) -> int:
        """Outputs of ``n_in`` inputs."""
        return math.floor(self.pos(n_in - 1)) + 1

    def widest(self) -> Fraction:
        """The most outputs one pair spans (what the bisection depth has to resolve). A gap in the frame times
        counts for at most ``2 ** MAX_DEPTH_LIMIT`` (a screen recording may pause for minutes): outputs in a wider
        one snap to that grid, and neighbours may share a frame there."""
        if self.times is None:
            return self.ratio
        gap = max((b - a for a, b in itertools.pairwise(self.times)), default=Fraction(0))
        return max(self.ratio, min(gap * self.out_fps, Fraction(2**MAX_DEPTH_LIMIT)))


def plan_output(n_in: int | None, in_fps: Fraction | int, *, factor: int | None = None,
                fps: Fraction | None = None) -> tuple[Fraction, Iterator[tuple[int, Fraction]]]:
    """``(out_fps, iterator of (i, t))``: output ``k`` sits in pair ``(i, i + 1)`` at time ``t`` in [0, 1).

    ``t == 0`` means input frame ``i`` itself (the last output may be ``(n_in - 1, 0)``). With
    ``n_in=None`` (length unknown) the iterator never ends.
    """
    ratio = fps_ratio(in_fps, factor, fps)
    if n_in is not None and n_in < 2:
        raise ValueError(f"need at least 2 frames to interpolate, got {n_in}")

    timeline = Timeline(ratio)

    def gen() -> Iterator[tuple[int, Fraction]]:
        for i in itertools.count() if n_in is None else range(n_in - 1):
            for t in timeline.pair_times(i):
                yield i, t
        if n_in is not None and timeline.ends_on_last(n_in):
            yield n_in - 1, Fraction(0)

    return Fraction(in_fps) * ratio, gen()


def output_count(n_in: int, in_fps: Fraction | int, *, factor: int | None = None,
                 fps: Fraction | None = None) -> int:
    """How many frames ``n_in`` input frames become (for progress totals)."""
    ratio = fps_ratio(in_fps, factor, fps)
    if n_in < 2:
        raise ValueError(f"need at least 2 frames to interpolate, got {n_in}")
    return Timeline(ratio).count(n_in)


def snap_time(t: Fraction | float, max_depth: int) -> tuple[Fraction, Fraction]:
    """``(nearest j / 2**max_depth, its error |snapped - t|)``; the error is at most ``1 / 2**(max_depth + 1)``."""
    t = Fraction(t)
    if not 0 <= t <= 1:
        raise ValueError(f"t must be in [0, 1], got {t}")
    scale = 2**max_depth
    j = math.floor(t * scale)
    rest = t * scale - j
    if rest > HALF or (rest == HALF and t < HALF):  # ties towards the middle keep snapping symmetric
        j += 1
    snapped = Fraction(j, scale)
    return snapped, abs(snapped - t)


def depth_for(ratio: Fraction, max_depth: int) -> int:
    """Bisection depth for an output/input fps ratio: ``max_depth``, or finer if outputs are denser."""
    depth = max_depth
    while 2**depth < ratio:
        depth += 1
    if depth > MAX_DEPTH_LIMIT:
        raise ValueError(f"an output rate {float(ratio):.4g} times the input's is more than framefill makes (at "
                         f"most {2**MAX_DEPTH_LIMIT} frames for each input frame); ask for a lower --fps or --factor")
    return depth


def check_dtype(dtype: torch.dtype) -> None:
    """The precisions a model may run in."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")



@dataclass
class Frame:
    """An input frame with what the cut and duplicate tests read of it."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    thumb: np.ndarray | None  # (h, w) float32 grey in [0, 1], at most THUMB_WIDTH wide
    hist: np.ndarray | None  # (HIST_BINS,) grey histogram, sums to 1


def thumbnail(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(grey thumbnail at most THUMB_WIDTH wide, its HIST_BINS-bin histogram)`` of an RGB frame, in [0, 1]."""
    h, w = image.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, round(h * tw / w))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / white(image.dtype)
    thumb = cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA)
    bins = np.minimum((thumb * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    return thumb, np.bincount(bins.ravel(), minlength=HIST_BINS) / bins.size


def pair_kind(a: Frame, b: Frame, config: ScheduleConfig) -> str:
    """``"duplicate"``, ``"cut"`` or ``"motion"`` for consecutive frames ``a`` and ``b``."""
    if a.thumb is None or b.thumb is None:
        return "motion"
    diff = np.abs(a.thumb - b.thumb)
    mad = float(diff.mean())
    if config.skip_duplicates and mad < config.duplicate_threshold and float(diff.max()) <= config.duplicate_max_diff:
        return "duplicate"
    if config.detect_scenes and mad > config.scene_threshold:
        hist_distance = 0.5 * float(np.abs(a.hist - b.hist).sum())
        if hist_distance > config.scene_hist_threshold:
            return "cut"
    return "motion"


def white(dtype: np.dtype) -> int:
    """The value of white in frames of ``dtype``: 255 for uint8, 65535 for uint16 (deep frames)."""
    return 65535 if dtype == np.uint16 else 255


def check_frame(frame: object, index: int, first: np.ndarray | None, deep: bool = False) -> np.ndarray:
    """``frame``, checked to be ``(H, W, 3)`` RGB of ``first``'s size and type: uint8, or with ``deep`` also uint16."""
    kinds = (np.uint8, np.uint16) if deep else (np.uint8,)
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype not in kinds:
        desc = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        wanted = " or ".join(np.dtype(k).name for k in kinds)
        raise ValueError(f"frame {index} must be an (H, W, 3) {wanted} RGB array, got a {desc}")
    if first is not None and frame.shape != first.shape:
        raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but the first frame was "
                         f"{first.shape[1]}x{first.shape[0]}; all frames must share one size")
    if first is not None and frame.dtype != first.dtype:
        raise ValueError(f"frame {index} is {frame.dtype} but the first frame was {first.dtype}")
    return frame



def is_windowed(model: torch.nn.Module) -> bool:
    """Whether ``model`` takes four-frame windows (``model.context == 4``) instead of pairs."""
    return int(getattr(model, "context", 2)) == 4
