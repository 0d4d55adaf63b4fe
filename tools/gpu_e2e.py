"""``framefill interp`` end to end on real footage at given sizes, timed as a user runs it (tools/gpu_run.sh).

    python tools/gpu_e2e.py --device cuda --size 1920x1080 --size 3840x2160:8G [--seconds 2] [--json e2e.json]
        [-- extra interp options]

Each ``--size WxH[:MEMORY]`` makes a clip of the first ``--seconds`` s of the demo clip (Big Buck Bunny, 720p 24 fps)
scaled to that size (H.264 CRF 16), then runs ``python -m framefill interp CLIP OUT --factor 2 --device DEVICE`` on
it (``--max-memory MEMORY`` where given) in a child process, and records its wall time (Python start-up and model
loading included), the frames in and out, and the output frames per second. The clips and outputs stay in a
temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framefill.ffmpeg import ffmpeg_exe
from framefill.video import probe

DEMO = Path(__file__).resolve().parent.parent / "demo" / "bbb_720p_24fps.mp4"


def make_clip(dst: Path, width: int, height: int, seconds: float) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(DEMO), "-t",
                    str(seconds), "-an", "-vf", f"scale={width}:{height}:flags=bicubic,format=yuv420p", "-c:v",
                    "libx264", "-preset", "veryfast", "-crf", "16", str(dst)], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", action="append", required=True, help="WxH, or WxH:MEMORY for --max-memory")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("extra", nargs="*", help="more interp options, after --")
    args = ap.parse_args()
    rows, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="framefill-e2e-") as tmp:
        for spec in args.size:
            size, _, memory = spec.partition(":")
            w, h = (int(v) for v in size.lower().split("x"))
            clip, out = Path(tmp) / f"clip_{w}x{h}.mp4", Path(tmp) / f"out_{w}x{h}.mp4"
            make_clip(clip, w, h, args.seconds)
            cmd = [sys.executable, "-m", "framefill", "interp", str(clip), str(out), "--factor", "2", "--device",
                   args.device, "--quiet", "--force", *(["--max-memory", memory] if memory else []), *args.extra]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            row = {"size": size, "max_memory": memory or None, "command": " ".join(cmd[1:]), "seconds": wall,
                   "returncode": done.returncode, "stderr": done.stderr.strip()[-2000:],
                   "frames_in": probe(clip).n_frames}
            if done.returncode == 0:
                row["frames_out"] = probe(out).n_frames
                row["fps_out"] = row["frames_out"] / wall
                print(f"{size}{' under --max-memory ' + memory if memory else ''}: {row['frames_in']} -> "
                      f"{row['frames_out']} frames in {wall:.1f} s ({row['fps_out']:.2f} output frames/s, start-up "
                      "included)")
            else:
                failed += 1
                print(f"{size}: interp failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "runs": rows}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
