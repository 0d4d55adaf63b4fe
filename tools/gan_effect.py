"""What adversarial fine-tuning (train --gan) does: PSNR, SSIM and sharpness of two weights files on the same
drop-frame triplets, and a picture.

    python tools/gan_effect.py BEFORE.safetensors AFTER.safetensors --data ../shared/data/val/videos \
        --picture gan.png [--max-triplets 5] [--strides 1,2]

Triplets as ``framefill eval`` picks them (``triplet_starts``). Sharpness: the mean absolute Laplacian of the
grey frame, as a ratio to the true middle frame's (1.0: as much fine detail as the truth; a blend or a blurry
frame is below 1, ringing or hallucinated texture above). The picture shows, left to right, the truth, BEFORE
and AFTER on a 384x384 crop (the most detailed window of the first triplet), 2x enlarged.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill.evaluate import discover, psnr, ssim, triplet_starts
from framefill.frames import write_image
from framefill.interpolate import interpolate_pair
from framefill.models import load_model
from framefill.video import FrameSource

CROP = 384


def detail(img: np.ndarray) -> float:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def triplets(data: Path, strides: list[int], limit: int):
    clips, _ = discover(data)
    for clip in clips:
        frames = list(FrameSource(clip.path))
        for s in strides:
            for i in triplet_starts(len(frames), s, limit):
                yield f"{clip.name} s{s} {i}", s, frames[i], frames[i + s], frames[i + 2 * s]


def busiest_crop(img: np.ndarray) -> tuple[int, int]:
    grey = np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))
    box = cv2.boxFilter(grey, -1, (CROP, CROP), normalize=True, borderType=cv2.BORDER_CONSTANT)
    h, w = grey.shape
    half = CROP // 2
    inner = box[half:h - half, half:w - half]
    y, x = np.unravel_index(np.argmax(inner), inner.shape)
    return int(y), int(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--picture", type=Path)
    ap.add_argument("--max-triplets", type=int, default=5)
    ap.add_argument("--strides", default="1,2")
    args = ap.parse_args()
    models = {"before": load_model(args.before)[0], "after": load_model(args.after)[0]}
    rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    picture = None
    with torch.inference_mode():
        for name, s, a, truth, b in triplets(args.data, [int(x) for x in args.strides.split(",")],
                                             args.max_triplets):
            outs = {k: interpolate_pair(a, b, m) for k, m in models.items()}
            for k, out in outs.items():
                rows.setdefault((k, s), []).append((psnr(out, truth), ssim(out, truth), detail(out) / detail(truth)))
            if picture is None and args.picture:
                y, x = busiest_crop(truth)
                tiles = [truth[y:y + CROP, x:x + CROP], outs["before"][y:y + CROP, x:x + CROP],
                         outs["after"][y:y + CROP, x:x + CROP]]
                picture = cv2.resize(np.concatenate(tiles, axis=1), None, fx=2, fy=2,
                                     interpolation=cv2.INTER_NEAREST)
                print(f"picture: {name}, crop at x={x} y={y}")
    print("| weights | stride | PSNR | SSIM | sharpness (Laplacian vs truth) | n |")
    print("|---|---|---|---|---|---|")
    for (k, s), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0] != "before")):
        cols = [statistics.mean(v[j] for v in r) for j in range(3)]
        print(f"| {k} | {s} | {cols[0]:.2f} | {cols[1]:.4f} | {cols[2]:.3f} | {len(r)} |")
    if picture is not None:
        write_image(args.picture, picture)


if __name__ == "__main__":
    main()
