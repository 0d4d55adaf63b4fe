"""PSNR of the plain blend of the two frames around the gap on the validation items ``framefill train --val``
uses (the same ``load_val``), next to which the logged ``val_psnr`` reads: a model that has learned nothing
scores this.

    python tools/val_blend.py ../shared/data/val/videos [--context 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from framefill.train.data import DataConfig
from framefill.train.loop import load_val
from framefill.train.losses import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("val", type=Path)
    ap.add_argument("--context", type=int, default=4, choices=(2, 4))
    ap.add_argument("--max-frames", type=int, default=240)  # framefill train's default
    args = ap.parse_args()
    items = load_val(args.val, DataConfig(max_frames=args.max_frames), context=args.context)
    a, b = (0, 1) if args.context == 2 else (1, 2)
    scores = [float(psnr(0.5 * (x[a:a + 1] + x[b:b + 1]), x[-1:])[0]) for _, x in items]
    print(f"blend: {np.mean(scores):.3f} dB over {len(scores)} validation items")


if __name__ == "__main__":
    main()
