"""The scheduler: a stream of video frames in, a stream at a higher frame rate out.

Timing. Output frame ``k`` has time ``k / out_fps``, i.e. position ``p = k * in_fps / out_fps`` in input-frame
units (exact ``Fraction`` arithmetic throughout): pair ``i = floor(p)``, time ``t = p - i``. Where ``t == 0`` the
output *is* input frame ``i`` (the same array). With ``N`` inputs and ``r = out_fps / in_fps`` there are
``floor((N - 1) * r) + 1`` outputs, none after the last input: for an integer ``factor`` F exactly
``(N - 1) * F + 1``, the first and last inputs being the first and last outputs. For an fps target the last
input is an output only when an output time lands on it (25 -> 60 fps: every 5th input frame does).
A variable frame rate input may bring its frames' own times (``interpolate_frames(..., times=...)``): output
``k`` is then placed at ``k / out_fps`` among them (``Timeline``), with ``in_fps`` the average rate.

The model. FILM knows only ``t = 0.5`` (``model.times == (0.5,)``), so other times come from recursive
bisection, as in FILM's own inference: the midpoint of the pair, then the midpoints of the halves, and so on.
Each time is snapped to the nearest ``j / 2**D`` (``snap_time``; ties go towards 0.5, so
``snap(1 - t) == 1 - snap(t)``), with ``D = max_depth`` (default 3: a 1/8 grid), raised to ``ceil(log2(r))``
when outputs are denser than the grid so that no two output times snap to one frame.
Timing error: at most ``1 / 2**(D + 1)`` of an input frame interval (1/16 at D = 3); factors 2, 4, 8 are
exact, factor 3 is off by 1/24 (t = 1/3 -> 3/8); ``InterpolationStats.max_timing_error`` reports the worst
used. Frames are memoised per pair (t = 3/8 and t = 1/4 share t = 1/2): at most ``D`` model frames per
output frame, ``2**D - 1`` per pair. A model listing other values in ``times`` is called as
``model(img0, img1, t)`` (``t`` an ``(N,)`` tensor) directly at those times; one with
``arbitrary_time = True`` directly at the exact, unsnapped ``t``.

Scene cuts and duplicates, judged on grey thumbnails at most 64 px wide (values in [0, 1]):
- a cut: mean absolute difference above ``scene_threshold`` (0.10) *and* distance between 32-bin grey
  histograms (total variation, 0..1) above ``scene_hist_threshold`` (0.20). The histogram keeps fast pans
  (large difference, same histogram) from counting; the difference keeps fades, exposure changes and flat
  animation (histogram moved, small difference) from counting. Measured on the project's clips
  (shared/data): motion pairs stay below a difference of 0.08; the five cuts of bikes.mp4 have a difference
  of 0.18 to 0.32 and a histogram distance of 0.249 to 0.71; flat animation (Big Buck Bunny) reaches a
  histogram distance of 0.66 at a difference of 0.03.
- a duplicate: mean absolute difference below ``duplicate_threshold`` (0.5/255) *and* largest difference at
  most ``duplicate_max_diff`` (6/255). Codec noise on static shots (one-by-one-person-detection.mp4,
  bottle-detection.mp4) reaches 6/255 on a thumbnail pixel (2/255 caught a third of those pairs); a 7x7-px
  square of contrast 0.5 moving its own width on a 1080p frame (~6/255 on a thumbnail pixel) is the
  smallest motion still seen.
Neither goes through the model: the in-betweens are copies of the nearer input (``t < 0.5``: the first
frame, else the second), so nothing is ever morphed across a cut.

Batching and memory. Frames are read until ``batch_size`` pairs need the model (or ``4 * batch_size`` pairs
are buffered); then all their work runs depth by depth, ``batch_size`` image pairs per model call, and
tensors are freed as soon as no deeper level reads them. Frames are padded once (edge replication) to
``model.divisor`` and cropped back. Inputs go to ``device`` as float32 (channels_last on CPU: faster for the
conv model), whatever the model's ``dtype``: the models convert them for their convolutions and keep their
geometry in float32 (``models.layers.conv_input``). Outputs come back as uint8 RGB on the CPU. The caller puts
the model on that device and dtype, in eval mode. A model call whose working memory would exceed
``ScheduleConfig.tiling.max_memory`` (default: what the device has free) runs in smaller batches, or else in
overlapping tiles blended without seams (``framefill.tiling``).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
import torch

from framefill.debug import ModelFrame, pack_aux
from framefill.models.layers import crop, pad_to_multiple
from framefill.tiling import TileConfig, Tiler

log = logging.getLogger(__name__)

MAX_DEPTH_LIMIT = 10  # up to 1023 model frames per pair; beyond that a model needs arbitrary_time
THUMB_WIDTH = 64  # scene-cut and duplicate tests run on grey thumbnails this wide
HIST_BINS = 32
HALF = Fraction(1, 2)
CPU = torch.device("cpu")


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
            _check_factor(self.factor)
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


def _check_factor(factor: object) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"factor must be an integer >= 2, got {factor!r}")


def _ratio(in_fps: Fraction | int, factor: int | None, fps: Fraction | None) -> Fraction:
    """``out_fps / in_fps``, validated."""
    in_fps = Fraction(in_fps)
    if in_fps <= 0:
        raise ValueError(f"input fps must be > 0, got {in_fps}")
    if (factor is None) == (fps is None):
        raise ValueError(f"give exactly one of factor and fps (got factor={factor}, fps={fps})")
    if factor is not None:
        _check_factor(factor)
        return Fraction(factor)
    fps = Fraction(fps)
    if fps <= in_fps:
        raise ValueError(f"target fps {fps} must be above the input fps {in_fps} (framefill only raises the "
                         "frame rate); pick a higher --fps or use --factor")
    return fps / in_fps


def out_fps_for(in_fps: Fraction | int, config: ScheduleConfig) -> Fraction:
    """The output frame rate, exact."""
    return Fraction(in_fps) * _ratio(in_fps, config.factor, config.fps)


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
    ratio = _ratio(in_fps, factor, fps)
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
    ratio = _ratio(in_fps, factor, fps)
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
        raise ValueError(f"an fps ratio of {float(ratio):.4g} needs more than {MAX_DEPTH_LIMIT} levels of "
                         "t = 0.5 recursion; use a lower target or a model with arbitrary_time")
    return depth


def check_dtype(dtype: torch.dtype) -> None:
    """The precisions a model may run in."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")


class _Runner:
    """Moves frames to the model's device/dtype and back, and calls the model on stacked batches.

    With ``aux`` (for ``--debug``) every call also asks the model for its maps (``return_aux=True``) and returns
    them after the frames' 3 channels (``debug.pack_aux``: ``AUX_CHANNELS`` more, NaN when the model has none), so
    that they go through batching and tiling with the frames.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 stats: InterpolationStats, tiling: TileConfig | None = None, aux: bool = False) -> None:
        check_dtype(dtype)
        self.model, self.device, self.dtype, self.stats = model, torch.device(device), dtype, stats
        self.aux = aux
        self.gives_aux = aux and "return_aux" in inspect.signature(model.forward).parameters
        self.divisor = int(getattr(model, "divisor", 1))
        self.arbitrary = bool(getattr(model, "arbitrary_time", False))
        self.direct = frozenset(Fraction(x) for x in getattr(model, "times", (0.5,)))
        self.takes_time = self.arbitrary or self.direct != {HALF}
        self.frame_dtype = np.dtype(np.uint8)  # the frames' type (uint16 for deep video), set by to_tensor
        self.tiler = Tiler(model, self._forward, lambda x0, x1: self.call(x0, x1, [HALF]), self.device, dtype,
                           self.divisor, tiling or TileConfig(), on_tiles=self._count_tiles)

    def is_direct(self, t: Fraction) -> bool:
        """Whether the model computes time ``t`` of a pair in one call (else: bisection)."""
        return self.arbitrary or t in self.direct

    def to_tensor(self, frame: np.ndarray) -> torch.Tensor:
        if not frame.flags.writeable or not frame.flags.c_contiguous:  # from_numpy warns on read-only arrays
            frame = np.array(frame)  # (decoder buffers) and fails on negative strides (flipped views)
        self.frame_dtype = frame.dtype  # outputs come back in the inputs' depth
        if frame.dtype == np.uint16:
            frame = frame.astype(np.int32)  # (torch reads no uint16 arrays)
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) integers
        return pad_to_multiple(x.float().div_(_top(self.frame_dtype)), self.divisor)[0]  # (1, 3, Hp, Wp) float32

    def to_frame(self, x: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
        x = crop(x, hw)[0].float().clamp(0, 1).mul(_top(self.frame_dtype)).round()  # (3, H, W)
        x = x.to(torch.uint8 if self.frame_dtype == np.uint8 else torch.int32)  # small on the way off a GPU
        return np.ascontiguousarray(x.permute(1, 2, 0).cpu().numpy().astype(self.frame_dtype))  # (H, W, 3)

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor, t: list[Fraction]) -> torch.Tensor:
        """The frames at local times ``t`` of the pairs ``(x0[b], x1[b])``: whole, in smaller batches or tiled
        (with ``aux``, their maps after their 3 channels)."""
        out = self.tiler(x0, x1, t)
        self.stats.model_frames += len(t)
        return out

    def _forward(self, x0: torch.Tensor, x1: torch.Tensor, t: list[Fraction]) -> torch.Tensor:
        out = self.call(x0, x1, t)
        self.stats.model_calls += 1
        return out

    def call(self, x0: torch.Tensor, x1: torch.Tensor, t: list[Fraction]) -> torch.Tensor:
        """The model on one batch of padded pairs, whole and uncounted: the layout and time argument every model
        call gets (``framefill bench`` times this)."""
        if self.device.type == "cpu":
            x0 = x0.contiguous(memory_format=torch.channels_last)
            x1 = x1.contiguous(memory_format=torch.channels_last)
        kwargs = {"return_aux": True} if self.gives_aux else {}
        if self.takes_time:
            out = self.model(x0, x1, torch.tensor([float(v) for v in t], device=self.device), **kwargs)
        else:
            out = self.model(x0, x1, **kwargs)
        aux = None
        if self.gives_aux and isinstance(out, tuple):
            out, aux = out
        if out.shape != x0.shape:
            raise ValueError(f"the model returned shape {tuple(out.shape)} for inputs {tuple(x0.shape)}")
        if self.aux:  # (N, 3 + AUX_CHANNELS, H, W)
            out = torch.cat([out, pack_aux(aux if isinstance(aux, dict) else None, out.shape[0],
                                           out.shape[-2:]).to(out.dtype)], dim=1)
        return out

    def _count_tiles(self, frames: int, tiles: int) -> None:
        self.stats.tiled_frames += frames
        self.stats.tiles += tiles


def _solve(runner: _Runner, images: list[np.ndarray], wanted: dict[int, set[Fraction]], batch_size: int,
           on_aux: Callable[[tuple[int, Fraction], torch.Tensor], None] | None = None
           ) -> dict[tuple[int, Fraction], np.ndarray]:
    """The frames at times ``wanted[j]`` (in (0, 1)) of the pairs ``(images[j], images[j + 1])``.

    Every needed node (a wanted time or a bisection ancestor) is computed once, depth by depth,
    across all pairs, ``batch_size`` per model call. Call it under ``torch.inference_mode()``.
    ``on_aux((j, t), maps)``, with a runner made with ``aux``, gets every node's ``(AUX_CHANNELS, H, W)`` maps,
    cropped, on the CPU.
    """
    recipe: dict[tuple[int, Fraction], tuple[Fraction, Fraction, Fraction]] = {}  # node -> (left, right, local t)
    level: dict[tuple[int, Fraction], int] = {}

    def add(j: int, t: Fraction) -> int:
        if t in (0, 1):
            return 0
        if (j, t) not in level:
            if runner.is_direct(t):
                left, right, local = Fraction(0), Fraction(1), t
            else:  # t = a / 2**d with a odd: the midpoint of its neighbours on the 1 / 2**d grid
                h = Fraction(1, t.denominator)
                left, right, local = t - h, t + h, HALF
            recipe[(j, t)] = (left, right, local)
            level[(j, t)] = 1 + max(add(j, left), add(j, right))
        return level[(j, t)]

    for j, times in wanted.items():
        for t in times:
            add(j, t)
    last_use: dict[tuple[int, Fraction], int] = {}  # the deepest level that reads a node
    for node, (left, right, _) in recipe.items():
        for dep in (left, right):
            if dep not in (0, 1):
                last_use[(node[0], dep)] = max(last_use.get((node[0], dep), 0), level[node])

    hw = images[0].shape[:2]
    inputs: dict[int, torch.Tensor] = {}
    memo: dict[tuple[int, Fraction], torch.Tensor] = {}

    def get(j: int, t: Fraction) -> torch.Tensor:
        if t in (0, 1):
            idx = j + int(t)
            if idx not in inputs:
                inputs[idx] = runner.to_tensor(images[idx])
            return inputs[idx]
        return memo[(j, t)]

    out: dict[tuple[int, Fraction], np.ndarray] = {}
    for lev in sorted(set(level.values())):
        nodes = sorted(node for node, n_lev in level.items() if n_lev == lev)
        for start in range(0, len(nodes), batch_size):
            chunk = nodes[start:start + batch_size]
            x0 = torch.cat([get(j, recipe[(j, t)][0]) for j, t in chunk])  # (B, 3, Hp, Wp)
            x1 = torch.cat([get(j, recipe[(j, t)][1]) for j, t in chunk])
            y = runner(x0, x1, [recipe[node][2] for node in chunk])  # (B, 3, Hp, Wp); (B, 3 + AUX_CHANNELS, ...)
            if runner.aux:
                maps = crop(y[:, 3:], hw).float().cpu()  # (B, AUX_CHANNELS, H, W)
                y = y[:, :3].clone()  # (not a view holding the maps' memory while memoised)
                if on_aux is not None:
                    for b, node in enumerate(chunk):
                        on_aux(node, maps[b])
            for b, node in enumerate(chunk):
                memo[node] = y[b:b + 1]
        for j, t in nodes:
            if t in wanted[j]:
                out[(j, t)] = runner.to_frame(memo[(j, t)], hw)
        for node in [node for node in memo if last_use.get(node, 0) <= lev]:
            del memo[node]  # no deeper level reads it: free the memory now
    return out


@dataclass
class _Frame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    thumb: np.ndarray | None  # (h, w) float32 grey in [0, 1], at most THUMB_WIDTH wide
    hist: np.ndarray | None  # (HIST_BINS,) grey histogram, sums to 1


def _thumbnail(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, round(h * tw / w))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / _top(image.dtype)
    thumb = cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA)
    bins = np.minimum((thumb * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    return thumb, np.bincount(bins.ravel(), minlength=HIST_BINS) / bins.size


def _pair_kind(a: _Frame, b: _Frame, config: ScheduleConfig) -> str:
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


def _top(dtype: np.dtype) -> int:
    """The value of white in frames of ``dtype``: 255 for uint8, 65535 for uint16 (deep frames)."""
    return 65535 if dtype == np.uint16 else 255


def _check_frame(frame: object, index: int, first: np.ndarray | None, deep: bool = False) -> np.ndarray:
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


def interpolate_frames(frames: Iterable[np.ndarray], in_fps: Fraction | int, model: torch.nn.Module,
                       config: ScheduleConfig, *, device: torch.device | str = CPU,
                       dtype: torch.dtype = torch.float32, on_progress: Callable[[int], None] | None = None,
                       stats: InterpolationStats | None = None,
                       times: Sequence[Fraction] | None = None,
                       on_debug: Callable[[ModelFrame], None] | None = None,
                       timeline: Timeline | None = None) -> Iterator[np.ndarray]:
    """Interpolate a stream of frames; a generator over the output frames, in order.

    Args:
        frames: ``(H, W, 3)`` uint8 RGB arrays, one size (or uint16 for deep video, two-frame models only: the
            outputs come back uint16 too); read lazily, a few batches ahead at most.
        in_fps: the input frame rate (a ``Fraction``: 30000/1001, not 29.97); with ``times``, the average one.
        model: ``model(img0, img1)`` -> the frame at t = 0.5 (see the module docstring for other models).
        config: the output rate and the scheduling knobs.
        device, dtype: where and in what precision the model runs.
        on_progress: called with the number of frames output so far, once per output frame.
        stats: filled in while the generator runs (pairs, cuts, duplicates, model calls).
        times: each frame's own time, seconds after the first (a variable frame rate video): outputs are placed
            at ``k / out_fps`` among them (``Timeline``) instead of assuming the frames evenly spaced. Two-frame
            models only.
        on_debug: called with every frame the model makes and its maps (flows, blend mask, fallback: see
            ``framefill.debug``), before the outputs it is are yielded. Two-frame models only.
        timeline: where the outputs sit among these frames, instead of the one ``in_fps``, ``config`` and ``times``
            make: a segment of a longer video (``framefill.segments``), whose frames start mid-video.

    Configuration errors raise here; fewer than 2 frames, bad frames and size changes raise
    ``ValueError`` from the generator when they are read.
    """
    ratio = _ratio(in_fps, config.factor, config.fps)
    stats = InterpolationStats() if stats is None else stats
    from framefill import windows  # imports this module

    if windows.is_windowed(model):  # four-frame models (convlstm): whole passes over the stream
        if times is not None:
            raise ValueError("four-frame models take evenly spaced frames; frame times are for two-frame models")
        if on_debug is not None:
            raise ValueError("four-frame models give no flow, mask or fallback maps; on_debug is for two-frame models")
        return windows.interpolate_windows(iter(frames), ratio, model, config, device=device, dtype=dtype,
                                           on_progress=on_progress, stats=stats, timeline=timeline)
    if timeline is None:
        timeline = Timeline(ratio, times, Fraction(in_fps) * ratio if times is not None else None)
    runner = _Runner(model, device, dtype, stats, config.tiling, aux=on_debug is not None)
    depth = 0 if runner.arbitrary else depth_for(timeline.widest(), config.max_depth)
    return _generate(iter(frames), timeline, depth, runner, config, stats, on_progress, on_debug)


def _generate(frames: Iterator[np.ndarray], timeline: Timeline, depth: int, runner: _Runner, config: ScheduleConfig,
              stats: InterpolationStats, on_progress: Callable[[int], None] | None,
              on_debug: Callable[[ModelFrame], None] | None = None) -> Iterator[np.ndarray]:
    window: list[_Frame] = []
    plans: list[list[tuple[int, Fraction | None]]] = []  # per pair: (0 | 1, None) = copy that frame, (0, t) = model
    busy = 0  # pairs in the window that need the model
    detect = config.detect_scenes or config.skip_duplicates

    def emit(image: np.ndarray) -> np.ndarray:
        stats.frames_out += 1
        if on_progress is not None:
            on_progress(stats.frames_out)
        return image

    def plan_pair(a: _Frame, b: _Frame) -> list[tuple[int, Fraction | None]]:
        kind = _pair_kind(a, b, config)
        if kind != "motion":
            log.debug("frames %d-%d: %s", a.index, b.index, kind)
            stats.pairs_duplicate += kind == "duplicate"
            stats.scene_cuts += kind == "cut"
        plan: list[tuple[int, Fraction | None]] = []
        for t in timeline.pair_times(a.index):
            if t == 0 or kind != "motion":
                plan.append((0 if t < HALF else 1, None))
                continue
            snapped, err = (t, Fraction(0)) if runner.arbitrary else snap_time(t, depth)
            stats.max_timing_error = max(stats.max_timing_error, float(err))
            plan.append((int(snapped), None) if snapped in (0, 1) else (0, snapped))
        return plan

    def debug_hook() -> Callable[[tuple[int, Fraction], torch.Tensor], None] | None:
        """``on_debug`` for the nodes of this window: the output frames each is, counted from the next one out."""
        if on_debug is None:
            return None
        outputs: dict[tuple[int, Fraction], list[int]] = {}
        k = stats.frames_out
        for j, plan in enumerate(plans):
            for _, t in plan:
                if t is not None:
                    outputs.setdefault((j, t), []).append(k)
                k += 1
        first = window[0].index
        return lambda node, maps: on_debug(ModelFrame(first + node[0], node[1], tuple(outputs.get(node, ())), maps))

    def flush() -> Iterator[np.ndarray]:
        wanted = {j: {t for _, t in plan if t is not None} for j, plan in enumerate(plans)}
        wanted = {j: times for j, times in wanted.items() if times}
        stats.pairs_interpolated += len(wanted)
        with torch.inference_mode():  # never across a yield: the mode would leak into the caller
            made = _solve(runner, [f.image for f in window], wanted, config.batch_size, debug_hook())
        for j, plan in enumerate(plans):
            for side, t in plan:
                yield emit(window[j + side].image if t is None else made[(j, t)])

    for index, image in enumerate(frames):
        image = _check_frame(image, index, window[0].image if window else None, deep=True)
        stats.frames_in += 1
        thumb, hist = _thumbnail(image) if detect else (None, None)
        frame = _Frame(index, image, thumb, hist)
        if window:
            plans.append(plan_pair(window[-1], frame))
            busy += any(t is not None for _, t in plans[-1])
        window.append(frame)
        if busy >= config.batch_size or len(plans) >= 4 * config.batch_size:
            yield from flush()
            window, plans, busy = window[-1:], [], 0
    n_in = stats.frames_in
    if n_in < 2:
        raise ValueError(f"need at least 2 frames to interpolate, got {n_in}")
    if plans:
        yield from flush()
    if timeline.ends_on_last(n_in):
        yield emit(window[-1].image)


def interpolate_pair(img0: np.ndarray, img1: np.ndarray, model: torch.nn.Module, t: Fraction | float = 0.5, *,
                     max_depth: int = 3, device: torch.device | str = CPU, dtype: torch.dtype = torch.float32,
                     tiling: TileConfig | None = None, stats: InterpolationStats | None = None,
                     on_debug: Callable[[ModelFrame], None] | None = None) -> np.ndarray:
    """One in-between frame of two ``(H, W, 3)`` uint8 images at time ``t`` (snapped as in the module docstring).

    No scene-cut or duplicate tests: the caller asked for this pair. ``t`` 0 or 1 returns a copy of an input.
    ``tiling`` sets the memory budget (as ``ScheduleConfig.tiling``); ``stats``, if given, counts the model calls.
    ``on_debug`` gets every frame the model makes with its maps (as for ``interpolate_frames``; the result is
    output 0). Two-frame models only.
    """
    _check_frame(img0, 0, None, deep=True)
    _check_frame(img1, 1, img0, deep=True)
    stats = InterpolationStats() if stats is None else stats
    t = Fraction(t)
    if not 0 <= t <= 1:
        raise ValueError(f"t must be in [0, 1], got {float(t)}")
    from framefill import windows  # imports this module

    if windows.is_windowed(model):  # a four-frame model: the pair's outer frames are copies of the pair
        if on_debug is not None:
            raise ValueError("four-frame models give no flow, mask or fallback maps; on_debug is for two-frame models")
        windows.check_tiling(tiling)
        return windows.interpolate_pair_windows(img0, img1, model, t, max_depth=max_depth, device=device,
                                                dtype=dtype, stats=stats)
    runner = _Runner(model, device, dtype, stats, tiling, aux=on_debug is not None)
    snapped = t if runner.arbitrary else snap_time(t, max_depth)[0]
    if snapped in (0, 1):
        return (img0 if snapped == 0 else img1).copy()

    def hook(node: tuple[int, Fraction], maps: torch.Tensor) -> None:
        if on_debug is not None:
            on_debug(ModelFrame(0, node[1], (0,) if node[1] == snapped else (), maps))

    with torch.inference_mode():
        return _solve(runner, [img0, img1], {0: {snapped}}, batch_size=1, on_aux=hook)[(0, snapped)]
