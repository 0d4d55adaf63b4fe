"""A picture of synthetic training triplets: one row per triplet, frame 0 | middle (the truth) | frame 1.

    python tools/show_synth.py /tmp/synth_strip.png [--photos ../shared/data/train/photos] [-n 4] [--size 256]

Augmentation is off, so the rows show the renderer itself: camera motion over a photo and 0-3 sprites.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from framefill.frames import write_image
from framefill.train.data import DataConfig
from framefill.train.synth import SynthConfig, SyntheticTriplets

GAP = 4  # pixels of white between the panels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="PNG to write")
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/train/photos"))
    ap.add_argument("-n", type=int, default=4, help="triplets (rows)")
    ap.add_argument("--size", type=int, default=256, help="frame side (pixels)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = DataConfig(crop=args.size, flip_prob=0.0, rot90_prob=0.0, reverse_prob=0.0, jitter=0.0)
    ds = SyntheticTriplets(args.photos, cfg, SynthConfig())
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.n):
        trip = (ds.sample(rng) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # (3, s, s, 3): in0, in1, gt
        gap = np.full((args.size, GAP, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([trip[0], gap, trip[2], gap, trip[1]], axis=1))
        rows.append(np.full((GAP, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    write_image(args.out, np.concatenate(rows[:-1]))
    print(f"wrote {args.out}: {args.n} triplets from {len(ds)} photos (frame 0 | middle | frame 1)")


if __name__ == "__main__":
    main()
