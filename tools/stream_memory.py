"""Memory over hours: a long generated video streamed through interp's own path, peak resident memory at its start
and at its end.

    python tools/stream_memory.py                      # two hours of 64x36 at 30 fps (216,000 frames), --factor 2
    python tools/stream_memory.py --seconds 600 --json mem.json

The clip (ffmpeg's testsrc2, H.264) is decoded, scheduled and encoded exactly as ``framefill interp`` does it
(``pipeline.interpolate_video``: decoding and encoding threads, ffmpeg children), with a stub model (the mean of the
two frames) because the memory in question is the scheduler's and the pipeline's, not a network's. A thread reads
this process's resident size (``VmRSS``) every 50 ms; the figures are its peak over the first and over the last
tenth of the output frames (and before the first frame: probing, which reads every packet's timestamp). ffmpeg's
own processes are not counted (their memory does not depend on the length).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import torch

from framefill.interpolate import ScheduleConfig
from framefill.pipeline import interpolate_video


class Mean(torch.nn.Module):
    """The frame halfway between two as their mean: a model that costs nothing."""

    times = (0.5,)
    divisor = 1

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        return (img0 + img1) / 2


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_clip(path: Path, seconds: float, size: str, fps: int) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={size}:rate={fps}:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
           "-g", "600", str(path)]
    subprocess.run(cmd, check=True)


def measure(seconds: float = 7200, size: str = "64x36", fps: int = 30, folder: Path | None = None) -> dict:
    """Stream a generated clip through interp's path; the peak resident MiB over the first and last tenth."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, dst = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        started = time.perf_counter()
        make_clip(src, seconds, size, fps)
        made = time.perf_counter() - started
        samples: list[tuple[int, float]] = []  # (frames written, resident MiB)
        written = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                samples.append((written[0], rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        try:
            report = interpolate_video(src, dst, Mean().eval(), ScheduleConfig(factor=2), device=torch.device("cpu"),
                                       dtype=torch.float32, on_progress=lambda n: written.__setitem__(0, n))
        finally:
            stop.set()
            sampler.join()
        wall = time.perf_counter() - started
    total = report.frames_out
    first = [mib for n, mib in samples if 0 < n <= total / 10]
    last = [mib for n, mib in samples if n >= total * 9 / 10]
    return {"seconds": seconds, "size": size, "fps": fps, "frames_in": report.frames_in, "frames_out": total,
            "clip_seconds": round(made, 1), "wall_seconds": round(wall, 1), "frames_out_per_second": total / wall,
            "peak_mib_first_tenth": max(first), "peak_mib_last_tenth": max(last),
            "peak_mib_overall": max(mib for _, mib in samples), "samples": len(samples),
            "peak_mib_before_first_frame": max((mib for n, mib in samples if n == 0), default=None),
            "fps_out": str(Fraction(report.fps_out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=7200, help="length of the generated clip")
    parser.add_argument("--size", default="64x36")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = measure(args.seconds, args.size, args.fps)
    print(f"{result['frames_in']} -> {result['frames_out']} frames ({args.seconds:g} s of {args.size} at "
          f"{args.fps} fps) in {result['wall_seconds']} s ({result['frames_out_per_second']:.0f} frames/s out); "
          f"peak resident memory: {result['peak_mib_first_tenth']:.1f} MiB over the first tenth, "
          f"{result['peak_mib_last_tenth']:.1f} MiB over the last")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
