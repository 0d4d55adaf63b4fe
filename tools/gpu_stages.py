"""The Python parts of the run on a lent GPU (tools/gpu_run.sh): its training data, its e2e stage, its summary.

    python tools/gpu_stages.py pack --src TRAIN [--out .gpu/data] [--max-mib 20]       (here, by make gpu-pack)
    python tools/gpu_stages.py e2e --device cuda --size 1920x1080 --size 3840x2160:8G [--seconds 2] [--json e2e.json]
        [-- extra interp options]                                                          (there: the e2e stage)
    python tools/gpu_stages.py report bench.json [compile.json] [e2e.json]                 (there: summary.txt)

pack: a small training set that travels with the checkout, from the training data only (a source inside a ``val``
folder is refused): every photo, downscaled so that its longer side is at most ``--photo-side`` px and saved as
JPEG, into ``OUT/photos``; then the videos (top-level files of ``SRC/videos``, sorted by name), each cut to its
first ``--seconds`` s, scaled to at most ``--width`` px wide and re-encoded as H.264 (CRF ``--crf``, no audio) into
``OUT/videos``, as long as the whole stays under ``--max-mib``. ``OUT/MANIFEST.txt`` lists every file with its
source. The GPU machine takes the working tree and its carried folders up to 64 MiB in all; the wheels that
``make gpu-pack`` fetches take 29 of that.

e2e: ``framefill interp`` end to end on real footage at given sizes, timed as a user runs it. Each ``--size
WxH[:MEMORY]`` makes a clip of the first ``--seconds`` s of the demo clip (Big Buck Bunny, 720p 24 fps) scaled to
that size (H.264 CRF 16), then runs ``python -m framefill interp CLIP OUT --factor 2 --device DEVICE`` on it
(``--max-memory MEMORY`` where given) in a child process, and records its wall time (Python start-up and model
loading included), the frames in and out, and the output frames per second. Clips and outputs stay in a temporary
folder.

report: the figures of a run in a few lines: per preset, size and precision, the model's time at batch 1, the best
batch and its frames per second, torch.compile's gain where it was measured, and the e2e runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".gif", ".m4v"}
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEMO = Path(__file__).resolve().parent.parent / "demo" / "bbb_720p_24fps.mp4"


# --- pack ----------------------------------------------------------------------------------------------------------


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def pack_photo(src: Path, dst: Path, side: int) -> bool:
    import cv2

    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        return False
    scale = min(1.0, side / max(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return bool(cv2.imwrite(str(dst), image, [cv2.IMWRITE_JPEG_QUALITY, 90]))


def pack_video(src: Path, dst: Path, seconds: float, width: int, crf: int) -> bool:
    from framefill.ffmpeg import ffmpeg_exe

    scale = f"scale='min({width},iw)':-2:flags=area,format=yuv420p"  # even sizes, never upscaled
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                           "-t", str(seconds), "-an", "-sn", "-vf", scale, "-c:v", "libx264", "-preset", "slow",
                           "-crf", str(crf), str(dst)], capture_output=True, text=True)
    return done.returncode == 0 and dst.exists() and dst.stat().st_size > 0


def pack(args: argparse.Namespace) -> int:
    src = args.src.resolve()
    if "val" in src.parts:
        sys.exit(f"error: {args.src} is validation data; pack only training data")
    if not (src / "videos").is_dir():
        sys.exit(f"error: {args.src} has no videos folder; give the training data's folder")
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "photos").mkdir(parents=True)
    (args.out / "videos").mkdir()
    manifest = []
    photos = sorted(p for p in (src / "photos").rglob("*") if p.suffix.lower() in PHOTO_EXTS) if (
        src / "photos").is_dir() else []
    for p in photos:
        dst = args.out / "photos" / f"{p.parent.name}_{p.stem}.jpg"
        if pack_photo(p, dst, args.photo_side):
            manifest.append(f"{dst.relative_to(args.out)}\t{p.relative_to(src)}")
    for v in sorted(p for p in (src / "videos").iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS):
        dst = args.out / "videos" / f"{v.stem}.mp4"
        if not pack_video(v, dst, args.seconds, args.width, args.crf):
            print(f"skipped {v.name}: ffmpeg could not re-encode it")
            dst.unlink(missing_ok=True)
            continue
        if size_mib(args.out) > args.max_mib:
            dst.unlink()
            print(f"skipped {v.name}: over the {args.max_mib:g} MiB budget")
            continue
        manifest.append(f"{dst.relative_to(args.out)}\t{v.relative_to(src)}")
    # The first line travels into the GPU-trained weights' metadata (gpu_run.sh's export note): no folder names.
    (args.out / "MANIFEST.txt").write_text(
        f"packed from the training set: every photo (at most {args.photo_side} px) and the first {args.seconds:g} s "
        f"of each clip (at most {args.width} px wide)\n" + "\n".join(manifest) + "\n")
    videos = sum(1 for m in manifest if m.startswith("videos/"))
    print(f"{len(manifest) - videos} photos and {videos} clips, {size_mib(args.out):.1f} MiB in {args.out}")
    return 0


# --- e2e -----------------------------------------------------------------------------------------------------------


def make_clip(dst: Path, width: int, height: int, seconds: float) -> None:
    from framefill.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(DEMO), "-t",
                    str(seconds), "-an", "-vf", f"scale={width}:{height}:flags=bicubic,format=yuv420p", "-c:v",
                    "libx264", "-preset", "veryfast", "-crf", "16", str(dst)], check=True)


def e2e(args: argparse.Namespace) -> int:
    from framefill.video import probe

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


# --- report --------------------------------------------------------------------------------------------------------


def bench_lines(rows: list[dict]) -> list[str]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["preset"], r["size"], r["dtype"])].append(r)
    lines = ["preset size dtype: batch 1 eager | best batch (frames/s) | compiled/eager at that batch"]
    for (preset, size, dtype), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        eager = [r for r in ok if not r["compiled"]]
        one = next((r for r in eager if r["batch"] == 1), None)
        best = max(ok, key=lambda r: r["fps"], default=None)
        text = f"{preset} {size} {dtype}: "
        text += f"{one['ms_median']:.2f} ms ({one['fps']:.1f} fps)" if one else "batch 1 not measured"
        if best:
            text += f" | best: batch {best['batch']}{' compiled' if best['compiled'] else ''} {best['fps']:.1f} fps"
            same = {r["compiled"]: r for r in ok if r["batch"] == best["batch"]}
            if True in same and False in same:
                text += f" | compiled {same[False]['ms_median'] / same[True]['ms_median']:.2f}x"
        failed = sorted({r["status"] for r in rs if r["status"] != "ok"})
        lines.append(text + (f" | not ok: {', '.join(failed)}" if failed else ""))
    return lines


def report(args: argparse.Namespace) -> int:
    for path in args.files:
        data = json.loads(Path(path).read_text())
        if "model" in data:  # framefill bench --json
            dev = data.get("device", {})
            print(f"{Path(path).name}: {dev.get('name') or dev.get('cpu', '')}, torch {data['versions']['torch']}")
            print("\n".join("  " + line for line in bench_lines(data["model"])))
            for e in data.get("e2e", []):
                shares = ", ".join(f"{k} {v:.0%}" for k, v in e.get("shares", {}).items())
                fps = f"{e['fps_out']:.1f} output frames/s" if e.get("fps_out") else e["status"]
                print(f"  e2e {e['preset']} {e['size']} {e['dtype']} batch {e['batch']}: {fps} ({shares})")
        elif "runs" in data:  # the e2e stage's --json
            for r in data["runs"]:
                mem = f" --max-memory {r['max_memory']}" if r.get("max_memory") else ""
                result = f"{r['frames_in']} -> {r['frames_out']} frames in {r['seconds']:.1f} s"
                if r["returncode"] != 0:
                    result = f"failed (exit {r['returncode']})"
                print(f"interp {r['size']}{mem}: {result}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("pack", help="a small training set to carry to the GPU machine")
    p.add_argument("--src", type=Path, required=True, help="the training data's folder (videos/, photos/)")
    p.add_argument("--out", type=Path, default=Path(".gpu/data"))
    p.add_argument("--max-mib", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0, help="length kept of each clip")
    p.add_argument("--width", type=int, default=640, help="largest width of a clip")
    p.add_argument("--crf", type=int, default=20)
    p.add_argument("--photo-side", type=int, default=1024)
    p.set_defaults(run=pack)
    p = sub.add_parser("e2e", help="framefill interp end to end at given sizes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", action="append", required=True, help="WxH, or WxH:MEMORY for --max-memory")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--json", default=None)
    p.add_argument("extra", nargs="*", help="more interp options, after --")
    p.set_defaults(run=e2e)
    p = sub.add_parser("report", help="the run's figures in a few lines")
    p.add_argument("files", nargs="+", help="framefill bench JSONs and the e2e stage's JSON")
    p.set_defaults(run=report)
    args = ap.parse_args()
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
