"""``interp --adapt``'s training data: the input's own frames, in runs spread through it, cut into drop-frame
triplets (the training set's skips), split into those learned from and those held back for the guard, and the crop
places where they move most (``framefill.adapt`` uses them)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from framefill.train.data import DataConfig, valid_triplets
from framefill.video import FrameSource


def run_starts(n_frames: int | None, count: int, length: int) -> list[int]:
    """Where ``count`` contiguous runs of ``length`` frames start, spread evenly over ``n_frames`` (unknown: one
    run after another from the start)."""
    if n_frames is None or n_frames <= count * length:
        return [k * length for k in range(count)]
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - length, count)})


def sample_runs(src: Path, *, max_frames: int, max_bytes: int, run_length: int, in_fps: Fraction | None = None,
                deadline: float | None = None) -> list[np.ndarray]:
    """Contiguous runs of ``run_length`` frames of the input, ``[(T, H, W, 3) uint8]``: at most ``max_frames`` frames
    (and ``max_bytes``) in all, spread through the input; decoding stops at the last run or at ``deadline``."""
    with FrameSource(Path(src), fps=in_fps) as source:
        info = source.info
        budget = max(3, min(max_frames, max_bytes // max(1, info.width * info.height * 3)))
        length = min(run_length, budget)
        starts = run_starts(info.n_frames, max(1, budget // length), length)
        runs: list[list[np.ndarray]] = []
        for k, frame in enumerate(source):
            run = next((i for i, s in enumerate(starts) if s <= k < s + length), None)
            if run is not None:
                if len(runs) <= run:
                    runs.extend([] for _ in range(run + 1 - len(runs)))
                runs[run].append(frame)
            if k >= starts[-1] + length - 1 or (deadline is not None and time.perf_counter() > deadline):
                break
    return [np.stack(r) for r in runs if len(r) >= 3]


def half_size(runs: list[np.ndarray], min_side: int) -> list[np.ndarray]:
    """The runs at half size where that leaves at least ``min_side`` pixels a side (else as they are).

    The input's own triplets ``(i, i + 1, i + 2)`` span twice the motion of the pairs ``(i, i + 1)`` that the job
    then interpolates; at half size their motion in pixels is that of the job's pairs, and a selector that weighs
    warped frames by how far things moved learns the motions it will meet. (Trained at full size, it learned what
    doubled motions need and lost 0.9 dB on a camera clip whose own held-out triplets, doubled too, said it gained.)
    """
    if not runs or min(runs[0].shape[1:3]) < 2 * min_side:
        return runs
    h, w = runs[0].shape[1:3]
    return [np.stack([cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for f in r]) for r in runs]


@dataclass(frozen=True)
class Triplet:
    run: int
    start: int
    stride: int

    def indices(self) -> tuple[int, int, int]:
        """The frames of the run: input 0, input 1, the truth."""
        return self.start, self.start + 2 * self.stride, self.start + self.stride


def find_triplets(runs: list[np.ndarray]) -> list[Triplet]:
    """Drop-frame triplets of the runs at strides 1 and 2 (where a run is long enough), skipping static ones,
    duplicated frames and scene cuts as the training set does."""
    found = []
    for r, frames in enumerate(runs):
        for stride in (1, 2):
            found += [Triplet(r, int(i), stride) for i in valid_triplets(frames, stride, DataConfig())]
    return sorted(found, key=lambda t: (t.run, t.start, t.stride))


def split_holdout(triplets: list[Triplet], every: int) -> tuple[list[Triplet], list[Triplet]]:
    """(training, held out): every ``every``-th triplet is held out (whole triplets, deterministically), and no
    training triplet has a held-out triplet's truth as its own truth."""
    held = [t for k, t in enumerate(triplets) if k % every == every // 2]
    truths = {(t.run, t.indices()[2]) for t in held}
    train = [t for t in triplets if t not in held and (t.run, t.indices()[2]) not in truths]
    return train, held


def _motion(frames: np.ndarray, t: Triplet, y: int, x: int, side: tuple[int, int]) -> float:
    a, b, _ = t.indices()
    pa = frames[a, y:y + side[0]:4, x:x + side[1]:4]
    pb = frames[b, y:y + side[0]:4, x:x + side[1]:4]
    return float(np.abs(pa.astype(np.int16) - pb).mean())


def crop_side(h: int, w: int, want: int, divisor: int) -> tuple[int, int]:
    """A crop of at most ``want`` pixels a side that fits the frame, in multiples of ``divisor`` where it can be."""
    def one(n: int) -> int:
        side = min(want, n)
        return side - side % divisor if side >= divisor else side
    return one(h), one(w)


def hard_crops(runs: list[np.ndarray], triplets: list[Triplet], side: tuple[int, int], places: int,
               rng: np.random.Generator, keep: int = 1) -> list[tuple[Triplet, int, int]]:
    """For each triplet the most moving of ``places`` crop places, and ``keep - 1`` places drawn uniformly (the
    still parts of a frame are where a selector trained on motion alone would go wrong); the most moving first."""
    scored = []
    for t in triplets:
        h, w = runs[t.run].shape[1:3]
        cands = [(int(rng.integers(h - side[0] + 1)), int(rng.integers(w - side[1] + 1))) for _ in range(places)]
        ranked = sorted(((_motion(runs[t.run], t, y, x, side), t, y, x) for y, x in cands), key=lambda s: -s[0])
        scored += ranked[:1] + ranked[1:][:keep - 1]  # (the rest of the candidates are in drawing order: uniform)
    scored.sort(key=lambda s: -s[0])
    return [(t, y, x) for _, t, y, x in scored]


def crop_triplet(runs: list[np.ndarray], t: Triplet, y: int, x: int, side: tuple[int, int]) -> np.ndarray:
    return runs[t.run][list(t.indices()), y:y + side[0], x:x + side[1]]  # (3, h, w, 3): inputs, then the truth
