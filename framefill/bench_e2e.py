"""Speed of the whole interp path on a generated clip, by stage (``framefill bench``'s end-to-end rows).

End to end. A clip of ``e2e_frames`` frames (a panning texture and a moving square) is written with
framefill's own writer (H.264), then run through ``interpolate_video`` at ``--factor 2`` exactly as
``framefill interp`` runs it (eager model, the largest batch as ``--batch-size``, output H.264, no audio).
Stage times (``pipeline.StageTimes``) are busy times of three threads that overlap: each is also given as a
share of the wall time, and the largest is the bottleneck.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill.bench_model import failure_status
from framefill.pipeline import StageTimes, interpolate_video
from framefill.schedule import ScheduleConfig
from framefill.video import FrameSink

log = logging.getLogger(__name__)


@dataclass
class EndToEndRow:
    model: str
    preset: str
    weights: str
    size: str
    dtype: str
    batch: int  # the scheduler's batch size (interp's --batch-size)
    status: str = "ok"
    frames_in: int = 0
    frames_out: int = 0
    fps_out: float | None = None  # output frames per second of wall time
    stages: dict[str, float] = field(default_factory=dict)  # StageTimes, seconds
    shares: dict[str, float] = field(default_factory=dict)  # decode / model / encode busy time over wall time


def synthetic_frames(width: int, height: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of a smooth random texture panning 3 px a frame, with a white square moving 5 px a frame."""
    rng = np.random.default_rng(seed)
    pan = 3 * n
    noise = rng.random((height // 8 + 2, (width + pan) // 8 + 2, 3)).astype(np.float32)  # coarse: a smooth texture
    texture = cv2.resize(noise, (width + pan, height), interpolation=cv2.INTER_CUBIC)  # (H, W + pan, 3)
    texture = (np.clip(texture, 0, 1) * 255).astype(np.uint8)
    side = max(4, min(width, height) // 8)
    frames = []
    for i in range(n):
        frame = np.ascontiguousarray(texture[:, 3 * i:3 * i + width])  # (H, W, 3)
        x = (5 * i) % max(1, width - side)
        frame[height // 3:height // 3 + side, x:x + side] = 255
        frames.append(frame)
    return frames


def write_clip(path: Path, width: int, height: int, n: int) -> Path:
    with FrameSink(path, width=width, height=height, fps=30) as sink:
        for frame in synthetic_frames(width, height, n):
            sink.write(frame)
    return path


def measure_end_to_end(net: torch.nn.Module, row: EndToEndRow, clip: Path, device: torch.device,
                       dtype: torch.dtype) -> EndToEndRow:
    """Run ``clip`` through ``interpolate_video`` at factor 2 and fill ``row`` with the stage times."""
    timings = StageTimes()
    out = clip.with_name(f"out_{clip.stem}.mp4")
    try:
        report = interpolate_video(clip, out, net, ScheduleConfig(factor=2, batch_size=row.batch), device=device,
                                   dtype=dtype, keep_audio=False, overwrite=True, timings=timings)
    except Exception as e:  # as for the model alone: the row says what failed
        log.debug("end-to-end run failed", exc_info=True)
        row.status = failure_status(e)
        return row
    finally:
        out.unlink(missing_ok=True)
    row.frames_in, row.frames_out = report.frames_in, report.frames_out
    row.fps_out = report.frames_out / timings.wall
    row.stages = asdict(timings)
    row.shares = {k: getattr(timings, k) / timings.wall for k in ("decode", "model", "encode")}
    return row
