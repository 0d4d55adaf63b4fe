"""One interpolation job cut into segments: ranges of output frames, each made from exactly the input frames it
needs, so that segments made apart (one after another by a resumed job, or on several machines) are, frame for
frame, the frames of one run.

A segment is a range ``[k0, k1)`` of output frame indices on the job's ``Timeline`` (output ``k`` at ``k / fps``;
a variable frame rate input's own frame times). Output ``k`` lies in the pair ``(i, i + 1)`` with
``pos(i) <= k < pos(i + 1)``, so the segment reads input frames ``pair(k0)`` to ``pair(k1 - 1) + 1``: the same
pairs, hence the same scene-cut and duplicate decisions (they judge the two frames of a pair and nothing else) and
the same model inputs as the single run. A four-frame model (``convlstm``) also sees the frames around each pair,
and its passes widen that need by half as much again at every level (one frame, then half a frame...), so its
segments read ``FOUR_FRAME_CONTEXT`` more input frames on each side; the outputs those extra frames make are
dropped. The scheduler runs on the segment's frames with a ``SegmentTimeline``: the job's timeline seen from the
segment's first frame, shifted by ``k0`` output frames, so that its bisection depth and every output time are the
single run's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from framefill.interpolate import interpolate_frames
from framefill.schedule import InterpolationStats, ScheduleConfig, Timeline, is_windowed

FOUR_FRAME_CONTEXT = 2  # input frames a four-frame model's segment reads beyond its pairs on each side (1 + 1/2 + ...)


@dataclass(frozen=True)
class Segment:
    index: int  # 0-based position in the job's plan
    outputs: range  # output frame indices k0 .. k1 - 1
    first: int  # the first input frame it reads
    last: int  # the last input frame it reads (inclusive)


def split(total: int, *, count: int | None = None, length: int | None = None) -> list[range]:
    """``total`` output frames cut into ``count`` ranges as even as can be, or into ranges of ``length`` frames."""
    if (count is None) == (length is None):
        raise ValueError("give exactly one of count and length")
    if total < 1:
        raise ValueError(f"nothing to split: {total} output frames")
    if length is not None:
        if length < 1:
            raise ValueError(f"a segment needs at least one frame, got {length}")
        return [range(k, min(k + length, total)) for k in range(0, total, length)]
    assert count is not None
    if not 1 <= count <= total:
        raise ValueError(f"{total} output frames make 1 to {total} segments, not {count}")
    bounds = [total * j // count for j in range(count + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


def pair_of(timeline: Timeline, n_in: int, k: int) -> int:
    """The input frame ``i`` that output ``k`` follows: the largest ``i < n_in`` with ``pos(i) <= k``."""
    lo, hi = 0, n_in - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if timeline.pos(mid) <= k:
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan(timeline: Timeline, n_in: int, ranges: Sequence[range], context: int = 0) -> list[Segment]:
    """The segments of ``ranges``, each with the input frames it reads (``context`` more on each side)."""
    segments = []
    for index, outputs in enumerate(ranges):
        first = pair_of(timeline, n_in, outputs.start)
        last = min(pair_of(timeline, n_in, outputs.stop - 1) + 1, n_in - 1)
        segments.append(Segment(index, outputs, max(0, first - context), min(n_in - 1, last + context)))
    return segments


def context_for(model: torch.nn.Module) -> int:
    """Input frames a segment reads beyond its pairs on each side, for ``model``."""
    return FOUR_FRAME_CONTEXT if is_windowed(model) else 0


class SegmentTimeline(Timeline):
    """``base`` seen from input frame ``first``, in output frames counted from ``shift``: local frame ``j`` at
    ``base.pos(first + j) - shift``. Its widest gap is the whole job's, so the bisection depth is the same."""

    def __init__(self, base: Timeline, first: int, shift: int) -> None:  # no super().__init__: base was checked
        self.ratio, self.times, self.out_fps = base.ratio, base.times, base.out_fps
        self.base, self.first, self.shift = base, first, shift

    def pos(self, i: int) -> Fraction:
        return self.base.pos(self.first + i) - self.shift

    def widest(self) -> Fraction:
        return self.base.widest()


def segment_frames(frames: Iterator[np.ndarray], segment: Segment, timeline: Timeline, in_fps: Fraction,
                   model: torch.nn.Module, config: ScheduleConfig, *, device: torch.device | str,
                   dtype: torch.dtype, stats: InterpolationStats | None = None,
                   on_progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """The output frames ``segment.outputs`` of the job, from its input frames ``segment.first..segment.last``.

    ``frames`` yields exactly those input frames. ``on_progress`` is called with the segment's frames so far.
    """
    local = SegmentTimeline(timeline, segment.first, segment.outputs.start)
    made = interpolate_frames(frames, in_fps, model, config, device=device, dtype=dtype, stats=stats,
                              timeline=local)
    skip = -math.ceil(local.pos(0))  # outputs of the first pair before k0 (and of a four-frame model's context)
    want = len(segment.outputs)
    done = 0
    try:
        for i, frame in enumerate(made):
            if i < skip:
                continue
            yield frame
            done += 1
            if on_progress is not None:
                on_progress(done)
            if done == want:
                return
    finally:
        made.close()
    raise ValueError(f"segment {segment.index + 1} made {done} of its {want} frames: the input ended early")


class Feed:
    """One pass over a video's frames handing each segment its input frames in turn; the few frames that
    neighbouring segments share are kept (``keep``), nothing else, so memory stays bounded."""

    def __init__(self, frames: Iterator[np.ndarray], keep: int = 8) -> None:
        self._frames = frames
        self._next = 0  # index of the next frame of ``frames``
        self._kept: deque[tuple[int, np.ndarray]] = deque(maxlen=keep)

    def take(self, first: int, last: int) -> Iterator[np.ndarray]:
        """Input frames ``first..last``; segments must come in order, each starting at most ``keep`` frames before
        the previous one's end."""
        if first < self._next and (not self._kept or first < self._kept[0][0]):
            raise ValueError(f"frame {first} was already dropped; take segments in order")
        for i, frame in list(self._kept):
            if first <= i <= last:
                yield frame
        while self._next <= last:
            frame = next(self._frames, None)
            if frame is None:
                raise ValueError(f"the input ended after {self._next} frames, before frame {last}")
            i, self._next = self._next, self._next + 1
            self._kept.append((i, frame))
            if i >= first:
                yield frame
