"""Pack a small training set that travels with the checkout to a lent GPU (tools/gpu_run.sh trains on it).

    python tools/pack_gpu_data.py [--src ../shared/data/train] [--out .gpu/data] [--max-mib 20]

From the training data only (a source inside a ``val`` folder is refused): every photo, downscaled so that its longer
side is at most ``--photo-side`` px and saved as JPEG, into ``OUT/photos``; then the videos (top-level files of
``SRC/videos``, sorted by name), each cut to its first ``--seconds`` s, scaled to at most ``--width`` px wide and
re-encoded as H.264 (CRF ``--crf``, no audio) into ``OUT/videos``, as long as the whole stays under ``--max-mib``.
``OUT/MANIFEST.txt`` lists every file with its source. The GPU machine takes the working tree and its carried
folders up to 64 MiB in all; the wheels (tools/pack_gpu_wheels.sh) take 29 of that.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

from framefill.ffmpeg import ffmpeg_exe

VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".gif", ".m4v"}
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def pack_photo(src: Path, dst: Path, side: int) -> bool:
    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        return False
    scale = min(1.0, side / max(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return bool(cv2.imwrite(str(dst), image, [cv2.IMWRITE_JPEG_QUALITY, 90]))


def pack_video(src: Path, dst: Path, seconds: float, width: int, crf: int) -> bool:
    scale = f"scale='min({width},iw)':-2:flags=area,format=yuv420p"  # even sizes, never upscaled
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                           "-t", str(seconds), "-an", "-sn", "-vf", scale, "-c:v", "libx264", "-preset", "slow",
                           "-crf", str(crf), str(dst)], capture_output=True, text=True)
    return done.returncode == 0 and dst.exists() and dst.stat().st_size > 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--out", type=Path, default=Path(".gpu/data"))
    ap.add_argument("--max-mib", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="length kept of each clip")
    ap.add_argument("--width", type=int, default=640, help="largest width of a clip")
    ap.add_argument("--crf", type=int, default=20)
    ap.add_argument("--photo-side", type=int, default=1024)
    args = ap.parse_args()
    src = args.src.resolve()
    if "val" in src.parts:
        sys.exit(f"error: {args.src} is validation data; pack only training data")
    if not (src / "videos").is_dir():
        sys.exit(f"error: {args.src} has no videos folder; give the training data folder (../shared/data/train)")
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
    (args.out / "MANIFEST.txt").write_text(
        f"packed by tools/pack_gpu_data.py from {args.src} (first {args.seconds:g} s of each clip, at most "
        f"{args.width} px wide; photos at most {args.photo_side} px)\n" + "\n".join(manifest) + "\n")
    videos = sum(1 for m in manifest if m.startswith("videos/"))
    print(f"{len(manifest) - videos} photos and {videos} clips, {size_mib(args.out):.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
