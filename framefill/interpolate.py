"""The scheduler's entry points: a stream of video frames in, a stream at a higher frame rate out
(``interpolate_frames``), or one in-between frame of a pair (``interpolate_pair``).

Each picks the scheduler for the model's flavour: two-frame models (``film``) go to ``framefill.pairs``
(recursive bisection of each pair, batching, padding, tiling), four-frame models (``model.context == 4``,
``convlstm``) to ``framefill.windows`` (whole passes over the stream). Both build on ``framefill.schedule``:
the configuration, the timeline of output times, snapping, and the scene-cut and duplicate judgement, whose
names this module re-exports (``from framefill.interpolate import ScheduleConfig`` keeps working).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction

import numpy as np
import torch

from framefill import pairs, windows
from framefill.debug import ModelFrame
from framefill.pairs import Runner
from framefill.schedule import (
    HALF,
    MAX_DEPTH_LIMIT,
    InterpolationStats,
    ScheduleConfig,
    Timeline,
    check_dtype,
    check_frame,
    depth_for,
    fps_ratio,
    is_windowed,
    out_fps_for,
    output_count,
    plan_output,
    snap_time,
)
from framefill.tiling import TileConfig

__all__ = [  # the entry points, and the core's names as before the split
    "HALF", "MAX_DEPTH_LIMIT", "InterpolationStats", "Runner", "ScheduleConfig", "Timeline", "check_dtype", "depth_for",
    "interpolate_frames", "interpolate_pair", "is_windowed", "out_fps_for", "output_count", "plan_output", "snap_time",
]

CPU = torch.device("cpu")


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
        model: ``model(img0, img1)`` -> the frame at t = 0.5 (``framefill.pairs`` for other times and models).
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
    ratio = fps_ratio(in_fps, config.factor, config.fps)
    stats = InterpolationStats() if stats is None else stats
    if is_windowed(model):  # four-frame models (convlstm): whole passes over the stream
        if times is not None:
            raise ValueError("four-frame models take evenly spaced frames; frame times are for two-frame models")
        if on_debug is not None:
            raise ValueError("four-frame models give no flow, mask or fallback maps; on_debug is for two-frame models")
        return windows.interpolate_windows(iter(frames), ratio, model, config, device=device, dtype=dtype,
                                           on_progress=on_progress, stats=stats, timeline=timeline)
    if timeline is None:
        timeline = Timeline(ratio, times, Fraction(in_fps) * ratio if times is not None else None)
    return pairs.interpolate_pairs(iter(frames), timeline, model, config, device=device, dtype=dtype,
                                   on_progress=on_progress, stats=stats, on_debug=on_debug)


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
    check_frame(img0, 0, None, deep=True)
    check_frame(img1, 1, img0, deep=True)
    stats = InterpolationStats() if stats is None else stats
    t = Fraction(t)
    if not 0 <= t <= 1:
        raise ValueError(f"t must be in [0, 1], got {float(t)}")
    if is_windowed(model):  # a four-frame model: the pair's outer frames are copies of the pair
        if on_debug is not None:
            raise ValueError("four-frame models give no flow, mask or fallback maps; on_debug is for two-frame models")
        windows.check_tiling(tiling)
        return windows.interpolate_pair_windows(img0, img1, model, t, max_depth=max_depth, device=device,
                                                dtype=dtype, stats=stats)
    return pairs.interpolate_one_pair(img0, img1, model, t, max_depth=max_depth, device=device, dtype=dtype,
                                      tiling=tiling, stats=stats, on_debug=on_debug)
