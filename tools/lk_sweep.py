"""How good is the film model's parameter-free path? PSNR of freshly initialised ``film-s`` models, whose
learned flow residuals and fusion head start at zero, so the output is the plain average of the two inputs
warped by the Lucas-Kanade flow alone (with the blend fallback where it is on), for a few settings, on the
triplets of a run_peers list, per stride.

    python tools/lk_sweep.py LIST
    python tools/lk_sweep.py LIST --try lk_window=13 --try pyramid_levels=7,lk_iters=12   # film-s and these

The settings were chosen on triplets of the *training* clips, not on the validation triplets that `make compare`
writes; LIST was made in ../shared/data/train/videos by

    /tmp/peers-venv/bin/python ../../tools/peers/clip_triplets.py 01_dog.mp4 03_blocks.mp4 04_coffee.mp4 \
        05_default_juggle.mp4 bikes.mp4 car-detection.mp4 tree.avi moviepy_example2_bbb_720p.mp4 bedroom.mp4 \
        cup.mp4 tlbvfi_vfi_test_480p.mp4 carphone_pristine.mp4 --count 3 --strides 1,2,3 --out /tmp/traintrip
(103 triplets; LIST is /tmp/traintrip/list.txt).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from framefill.frames import read_image
from framefill.interpolate import interpolate_pair
from framefill.models.film import build_film

# Each row adds one part of the parameter-free path; the last rows vary the fallback's softness.
SETTINGS = {
    "1 LK step per level, 5 px window, no smoothing, no fallback": dict(
        lk_iters=1, lk_fine_iters=1, lk_finest=0, lk_window=5, lk_smooth=1, fallback_window=0),
    "8 LK steps, 9 px window, box mean of 7, no fallback": dict(lk_sigma=0.0, fallback_window=0),
    "8 LK steps, confidence-weighted mean, no fallback": dict(fallback_window=0),
    "+ blend fallback, window 15, softness 0.03 (film-s)": {},
    "+ blend fallback, softness 0.1": dict(fallback_temp=0.1),
}


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2)))


def _value(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list", type=Path)
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="FIELD=VALUE,...",
                    help="score film-s and these FilmConfig overrides instead of the built-in rows (repeatable)")
    args = ap.parse_args()
    settings = SETTINGS
    if args.tries:
        settings = {"film-s": {}} | {t: {k: _value(v) for k, v in (kv.split("=") for kv in t.split(","))}
                                     for t in args.tries}
    trips = []
    for line in args.list.read_text().splitlines():
        f0, f1, gt, name = line.split()[:4]
        trips.append((read_image(Path(f0)), read_image(Path(f1)), read_image(Path(gt)), name.rsplit("_", 1)[-1]))
    strides = sorted({t[3] for t in trips})
    print("| Lucas-Kanade setting | " + " | ".join(f"{s} PSNR" for s in strides) + " | s/frame |")
    print("|---|" + "---|" * len(strides) + "---|")
    for label, overrides in settings.items():
        torch.manual_seed(0)
        model = build_film("film-s", **overrides).eval()
        scores: dict[str, list[float]] = {}
        start = time.perf_counter()
        for a, b, g, stride in trips:
            scores.setdefault(stride, []).append(psnr(interpolate_pair(a, b, model), g))
        sec = (time.perf_counter() - start) / len(trips)
        print(f"| {label} | " + " | ".join(f"{np.mean(scores[s]):.2f}" for s in strides) + f" | {sec:.2f} |")


if __name__ == "__main__":
    main()
