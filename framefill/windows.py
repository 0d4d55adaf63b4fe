"""The four-frame scheduler, for models that see two frames on each side of the gap (``model.context == 4``,
such as ``convlstm``): the frame between I1 and I2 from the window (I0, I1, I2, I3).

Passes. Such a model knows only t = 0.5, and its context must be frames at the same spacing as the pair, so
other times come from whole passes rather than from bisecting one pair: each pass turns a stream of ``n`` frames
into ``2n - 1`` (every input kept, a new frame between each two), and the next pass takes that stream, the
previous pass's frames, as its four-frame context. Factor ``2**k`` is ``k`` passes. Other ratios run
``depth_for(ratio, max_depth)`` passes and take, for each output time, the frame at the nearest point of that
``1 / 2**D`` grid (the same snapping and timing error as the film scheduler, see ``framefill.schedule``);
every grid frame is computed, so a ratio of 2.5 costs 7 model frames per input pair at the default depth 3.

Windows. Pair (j, j + 1) is interpolated from frames (j - 1, j, j + 1, j + 2). A missing outer frame is replaced
by a copy of the nearer middle one (I0 := I1 at the start, I3 := I2 at the end), as it is in training
(``DataConfig.edge_prob``); so is an outer frame across a scene cut or a duplicate pair, so that the model never
sees frames from another shot, and a repeated frame never poses as motion.

Cuts and duplicates are judged once, on the input, as in ``framefill.pairs`` (``framefill.schedule``'s test). Such pairs
get copies (the frame at t = 0.5 is the second frame), and the labels are carried through the passes rather
than judged again: after a pass a cut pair becomes (cut, duplicate) and a duplicate pair (duplicate,
duplicate), so deeper passes copy there too.

Streaming: every pass holds about ``batch_size`` windows; frames travel between passes as uint8 RGB arrays.
Tiling is not implemented for four-frame models (``--tile`` and ``--max-memory`` are refused).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np
import torch

from framefill import schedule
from framefill.models.layers import crop, pad_to_multiple
from framefill.schedule import Frame, InterpolationStats, ScheduleConfig, Timeline
from framefill.schedule import (
    is_windowed as is_windowed,  # re-exported: the flavour test importers know from here
)
from framefill.tiling import TileConfig

MOTION, CUT, DUPLICATE = "motion", "cut", "duplicate"
# Labels of the two halves of a pair after a pass: (first frame, new frame), (new frame, second frame).
_HALVES = {MOTION: (MOTION, MOTION), CUT: (CUT, DUPLICATE), DUPLICATE: (DUPLICATE, DUPLICATE)}

Item = tuple[np.ndarray, str | None]  # a frame and the label of the pair (previous frame, this one); None first


def window(frames: list[np.ndarray], kinds: list[str], j: int) -> list[np.ndarray]:
    """The four frames for the pair ``(frames[j], frames[j + 1])``; ``kinds[k]`` labels the pair ``(k, k + 1)``.

    An outer frame that does not exist, or sits across a pair that is not plain motion, is replaced by the
    nearer middle frame.
    """
    i1, i2 = frames[j], frames[j + 1]
    i0 = frames[j - 1] if j >= 1 and kinds[j - 1] == MOTION else i1
    i3 = frames[j + 2] if j + 2 < len(frames) and kinds[j + 1] == MOTION else i2
    return [i0, i1, i2, i3]


class WindowRunner:
    """Stacks windows into one batch on the model's device and dtype, calls the model, returns uint8 frames."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str, dtype: torch.dtype,
                 stats: InterpolationStats) -> None:
        schedule.check_dtype(dtype)
        self.model, self.device, self.dtype, self.stats = model, torch.device(device), dtype, stats
        self.divisor = int(getattr(model, "divisor", 1))

    def __call__(self, windows: list[list[np.ndarray]]) -> list[np.ndarray]:
        hw = windows[0][0].shape[:2]
        with torch.inference_mode():  # never across a yield: the mode would leak into the caller
            x = torch.from_numpy(np.stack([np.stack(w) for w in windows])).to(self.device)  # (B, 4, H, W, 3) uint8
            x = x.permute(0, 1, 4, 2, 3).float().div_(255)  # (B, 4, 3, H, W) float32, whatever the model's dtype
            b = x.shape[0]
            x, _ = pad_to_multiple(x.flatten(0, 1), self.divisor)  # (4B, 3, Hp, Wp): edge replication
            y = self.model(x.view(b, 4, *x.shape[1:]))  # (B, 3, Hp, Wp)
            if y.shape != (b, 3, *x.shape[-2:]):
                raise ValueError(f"the model returned shape {tuple(y.shape)} for windows {tuple(x.shape)}")
            y = crop(y, hw).float().clamp(0, 1).mul_(255).round_().to(torch.uint8)
            # interleaved by torch, several times faster on the CPU than numpy's copy of a permuted array
            y = y.permute(0, 2, 3, 1).contiguous().cpu()
        self.stats.model_calls += 1
        self.stats.model_frames += b
        return list(y.numpy())  # (H, W, 3) each, C-contiguous


def double(items: Iterator[Item], run: WindowRunner, batch_size: int) -> Iterator[Item]:
    """One pass: ``n`` labelled frames in, ``2n - 1`` out (a new frame between each two)."""
    frames: list[np.ndarray] = []  # frames[k] is the stream's frame offset + k
    kinds: list[str] = []  # kinds[k] labels the pair (frames[k], frames[k + 1])
    offset = 0
    nxt = 0  # the next pair to emit, (nxt, nxt + 1), in stream indices
    last_half: str | None = None  # label of the pair ending at frame nxt, after this pass

    def emit(upto: int) -> Iterator[Item]:
        """Emit pairs nxt .. upto - 1: their first frames and the new frames."""
        nonlocal nxt, last_half
        pairs = range(nxt - offset, upto - offset)
        todo = [k for k in pairs if kinds[k] == MOTION]
        made: dict[int, np.ndarray] = {}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            made.update(zip(chunk, run([window(frames, kinds, k) for k in chunk]), strict=True))
        for k in pairs:
            first, second = _HALVES[kinds[k]]
            yield frames[k], last_half
            yield made.get(k, frames[k + 1]), first  # a cut or duplicate: the second frame (t = 0.5 rounds up)
            last_half = second
        nxt = upto

    for image, kind in items:
        if frames:
            kinds.append(kind or MOTION)
        frames.append(image)
        ready = offset + len(frames) - 2  # pairs before this one have both outer frames
        busy = sum(1 for k in range(nxt - offset, ready - offset) if kinds[k] == MOTION)
        if busy >= batch_size or ready - nxt >= 4 * batch_size:  # bounded also on long static stretches
            yield from emit(ready)
            drop = nxt - 1 - offset  # keep one frame left of the next pair: its left context
            if drop > 0:
                frames, kinds, offset = frames[drop:], kinds[drop:], offset + drop
    if frames:
        yield from emit(offset + len(frames) - 1)
        yield frames[-1], last_half


def _labelled(frames: Iterator[np.ndarray], config: ScheduleConfig, stats: InterpolationStats) -> Iterator[Item]:
    """Input frames, checked, with the label of each consecutive pair (judged on thumbnails)."""
    prev: Frame | None = None
    detect = config.detect_scenes or config.skip_duplicates
    for index, image in enumerate(frames):
        image = schedule.check_frame(image, index, prev.image if prev else None)
        stats.frames_in += 1
        thumb, hist = schedule.thumbnail(image) if detect else (None, None)
        frame = Frame(index, image, thumb, hist)
        kind = None
        if prev is not None:
            kind = schedule.pair_kind(prev, frame, config)
            stats.pairs_duplicate += kind == DUPLICATE
            stats.scene_cuts += kind == CUT
            stats.pairs_interpolated += kind == MOTION
        yield image, kind
        prev = frame
    if stats.frames_in < 2:
        raise ValueError(f"need at least 2 frames to interpolate, got {stats.frames_in}")


def check_tiling(tiling: TileConfig | None) -> None:
    """Refuse a memory budget or forced tiles: four-frame models run whole frames."""
    if tiling is not None and (tiling.tile is not None or tiling.max_memory is not None):
        raise ValueError("tiles (--tile, --max-memory) are implemented for film only; four-frame models run "
                         "whole frames")


def passes_for(ratio: Fraction, max_depth: int) -> int:
    """Passes for an output/input fps ratio: ``log2(ratio)`` when it is a power of two, else the snapping depth."""
    if ratio.denominator == 1 and ratio.numerator & (ratio.numerator - 1) == 0:
        return ratio.numerator.bit_length() - 1
    return schedule.depth_for(ratio, max_depth)


def interpolate_windows(frames: Iterator[np.ndarray], ratio: Fraction, model: torch.nn.Module,
                        config: ScheduleConfig, *, device: torch.device | str, dtype: torch.dtype,
                        on_progress: Callable[[int], None] | None, stats: InterpolationStats,
                        timeline: Timeline | None = None) -> Iterator[np.ndarray]:
    """The output frames of ``framefill.interpolate.interpolate_frames`` for a four-frame model (``timeline``: as
    there, for a segment of a longer video)."""
    check_tiling(config.tiling)
    run = WindowRunner(model, device, dtype, stats)
    depth = passes_for(ratio, config.max_depth)
    return _select(_grid(frames, depth, run, config, stats), timeline or Timeline(ratio), depth, stats, on_progress)


def _grid(frames: Iterator[np.ndarray], depth: int, run: WindowRunner, config: ScheduleConfig,
          stats: InterpolationStats) -> Iterator[np.ndarray]:
    stream: Iterator[Item] = _labelled(frames, config, stats)
    for _ in range(depth):
        stream = double(stream, run, config.batch_size)
    for image, _ in stream:
        yield image


def _select(grid: Iterator[np.ndarray], timeline: Timeline, depth: int, stats: InterpolationStats,
            on_progress: Callable[[int], None] | None) -> Iterator[np.ndarray]:
    """Pick the output frames from the stream of frames at times ``g / 2**depth`` (input frame units).

    Output times past the last input frame are never made: once the grid has run out, ``stats.frames_in`` is
    the input's length ``n``, and only pairs before ``n - 1`` (and frame ``n - 1`` itself at t = 0) count.
    """
    scale = 2**depth
    frames = enumerate(grid)
    g, image = next(frames, (-1, None))
    following = next(frames, None)  # one frame of look-ahead: is ``g`` the last grid frame?
    for i in itertools.count():
        for t in timeline.pair_times(i):
            snapped, err = schedule.snap_time(t, depth)
            target = i * scale + int(snapped * scale)
            while g < target and following is not None:
                g, image = following
                following = next(frames, None)
            last = stats.frames_in - 1
            if following is None and (i > last or (i == last and t > 0)):
                return
            if g != target:
                return
            stats.max_timing_error = max(stats.max_timing_error, float(err))
            stats.frames_out += 1
            if on_progress is not None:
                on_progress(stats.frames_out)
            yield image
        if following is None and i >= stats.frames_in - 1:
            return


def interpolate_pair_windows(img0: np.ndarray, img1: np.ndarray, model: torch.nn.Module, t: Fraction, *,
                             max_depth: int, device: torch.device | str, dtype: torch.dtype,
                             stats: InterpolationStats) -> np.ndarray:
    """The frame at time ``t`` of one pair for a four-frame model: the outer frames are copies of the pair."""
    snapped = schedule.snap_time(t, max_depth)[0]
    if snapped in (0, 1):
        return (img0 if snapped == 0 else img1).copy()
    depth = int(math.log2(snapped.denominator))
    stream: Iterator[Item] = iter([(img0, None), (img1, MOTION)])
    run = WindowRunner(model, device, dtype, stats)
    for _ in range(depth):
        stream = double(stream, run, 1)
    return [image for image, _ in stream][int(snapped * 2**depth)]


def interpolate_middle(a: np.ndarray, b: np.ndarray, model: torch.nn.Module, *, before: np.ndarray | None = None,
                       after: np.ndarray | None = None, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32, config: ScheduleConfig | None = None) -> np.ndarray:
    """The frame halfway between ``a`` and ``b`` from one model call, with the frames ``before`` and ``after``
    as the outer context when given (each one a step away, at the pair's own spacing).

    An outer frame that is missing, or across a scene cut or a duplicate (judged as the scheduler judges them,
    with ``config``'s thresholds), is replaced by the nearer frame of the pair, as in a video. The pair itself is
    interpolated whatever it is (the caller asked for it).
    """
    frames = [f for f in (before, a, b, after) if f is not None]
    stats = InterpolationStats()
    kinds = [kind or MOTION for _, kind in _labelled(iter(frames), config or ScheduleConfig(factor=2), stats)][1:]
    j = 0 if before is None else 1
    kinds[j] = MOTION
    return WindowRunner(model, device, dtype, stats)([window(frames, kinds, j)])[0]
