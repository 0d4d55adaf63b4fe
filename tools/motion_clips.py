"""Write short lossless clips of non-linear motion, rendered from a still photo, to measure where four frames help.

    python tools/motion_clips.py ../shared/data/val/photos/trees_4256x2832.jpg --out /tmp/motion_clips

Every frame is rendered straight from the photo (no frame is made from another), so the frames dropped by the
drop-frame protocol are exact. Three 1280x720 clips of 25 frames, written as FFV1 .mkv:
- ``accel``: the camera pans right, starting still and speeding up at a constant rate (0 to 24 px a frame);
- ``curve``: the camera's view travels a circle of radius 120 px, 1/40 of a turn a frame (~19 px a frame),
  so the motion turns steadily;
- ``orbit``: a fixed background with a disc cut from elsewhere in the photo travelling an ellipse
  (radii 300 x 160 px, 1/30 of a turn a frame) and speeding up, over it.
The photo should be held out from training (the validation photo is).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from framefill.frames import read_image
from framefill.video import EncodeOptions, FrameSink

W, H, N = 1280, 720, 25


def view(photo: np.ndarray, cx: float, cy: float, scale: float) -> np.ndarray:
    """The 1280x720 view centred at photo point (cx, cy), ``scale`` photo pixels per output pixel."""
    m = np.array([[scale, 0, cx - scale * (W - 1) / 2], [0, scale, cy - scale * (H - 1) / 2]], dtype=np.float64)
    return cv2.warpAffine(photo, m, (W, H), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def clips(photo: np.ndarray) -> dict[str, list[np.ndarray]]:
    ph, pw = photo.shape[:2]
    scale = 1.5  # photo pixels per output pixel: sharp, and room to move
    cx, cy = pw / 2, ph / 2
    out: dict[str, list[np.ndarray]] = {"accel": [], "curve": [], "orbit": []}
    for k in range(N):
        out["accel"].append(view(photo, cx - 700 + scale * 0.5 * 1.0 * k * k, cy, scale))  # v = k px/frame
        a = 2 * math.pi * k / 40
        out["curve"].append(view(photo, cx + scale * 120 * math.cos(a), cy + scale * 120 * math.sin(a), scale))
    background = view(photo, cx, cy, scale)
    sprite = view(photo, pw * 0.2, ph * 0.25, scale)[:200, :200]
    yy, xx = np.mgrid[:200, :200]
    alpha = np.clip(100.5 - np.hypot(yy - 99.5, xx - 99.5), 0, 1)[..., None]  # a disc with a 1-px soft edge
    for k in range(N):
        a = 2 * math.pi * (k / 30 + 0.002 * k * k)
        x, y = W / 2 + 300 * math.cos(a) - 100, H / 2 + 160 * math.sin(a) - 100
        m = np.array([[1, 0, x], [0, 1, y]], dtype=np.float64)  # sub-pixel placement of sprite and mask
        moved = cv2.warpAffine(sprite, m, (W, H), flags=cv2.INTER_LINEAR).astype(np.float32)
        mask = cv2.warpAffine(alpha.astype(np.float32), m, (W, H), flags=cv2.INTER_LINEAR)[..., None]
        out["orbit"].append(np.round(mask * moved + (1 - mask) * background).astype(np.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    photo = read_image(args.photo)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frames in clips(photo).items():
        with FrameSink(args.out / f"{name}.mkv", width=W, height=H, fps=25, options=EncodeOptions(codec="ffv1"),
                       overwrite=True) as sink:
            for f in frames:
                sink.write(f)
        print(args.out / f"{name}.mkv")


if __name__ == "__main__":
    main()
