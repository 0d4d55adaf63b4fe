"""Side-by-side pictures for ``framefill interp --montage PATH``: the input left, the interpolated output right.

The left half of output frame ``k`` is the input as it looks at the output rate: the nearest input frame at or
before output ``k``'s time, input ``i`` with ``Timeline.pos(i) <= k`` (the timeline the scheduler places its
outputs on, variable frame rates included). Both halves run on one clock, and an output that is an input frame
shows that frame on both sides. For a pair of images the montage is one image: the first image left, the
in-between right (the same rule: the in-between's nearest earlier input is the first image).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from framefill.schedule import Timeline


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two ``(H, W, 3)`` frames of one size and type as one ``(H, 2W, 3)`` frame."""
    if left.shape != right.shape or left.dtype != right.dtype:
        raise ValueError(f"a montage needs two frames of one size and type, got {left.shape} {left.dtype} and "
                         f"{right.shape} {right.dtype}")
    return np.concatenate([left, right], axis=1)


class HeldInputs:
    """The input frame shown at each output: ``watch`` the scheduler's input stream through it, then ask ``at(k)``
    for the outputs in order. It keeps only the frames a later output may still show (the scheduler's read-ahead).
    """

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._frames: deque[tuple[int, np.ndarray]] = deque()  # (input index, frame), oldest first
        self._read = 0  # input frames seen
        self._held = 0  # the input shown at the last output asked for

    def watch(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``frames`` unchanged, each kept until no later output shows it."""
        for frame in frames:
            self._frames.append((self._read, frame))
            self._read += 1
            yield frame

    def at(self, k: int) -> np.ndarray:
        """The input frame shown at output ``k`` (``k`` never decreasing from call to call)."""
        while self.timeline.pos(self._held + 1) <= k:
            self._held += 1
        while len(self._frames) > 1 and self._frames[0][0] < self._held:
            self._frames.popleft()
        if not self._frames or self._frames[0][0] != self._held:
            raise RuntimeError(f"output {k} shows input frame {self._held}, which has not been read "
                               f"({self._read} read)")
        return self._frames[0][1]

    def montage(self, k: int, output: np.ndarray) -> np.ndarray:
        """Output frame ``k`` beside the input shown at its time: ``(H, 2W, 3)``."""
        return side_by_side(self.at(k), output)
