"""Does training help? PSNR of the shipped weights and of a freshly initialised model of the same config
on the triplets of a run_peers list (e.g. the one `make compare` writes), per stride.

    python tools/trained_vs_init.py LIST [--weights weights/film.safetensors] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from framefill.frames import read_image
from framefill.interpolate import interpolate_pair
from framefill.models import build_model, default_weights, load_model


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list", type=Path)
    ap.add_argument("--weights", type=Path, default=default_weights("film"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    trained, meta = load_model(args.weights)
    torch.manual_seed(args.seed)
    fresh = build_model(meta["architecture"], config=json.loads(meta["config"])).eval()
    scores: dict[str, list[tuple[float, float]]] = {}
    for line in args.list.read_text().splitlines():
        f0, f1, gt, name = line.split()[:4]
        a, b, g = read_image(Path(f0)), read_image(Path(f1)), read_image(Path(gt))
        scores.setdefault(name.rsplit("_", 1)[-1], []).append(
            (psnr(interpolate_pair(a, b, trained), g), psnr(interpolate_pair(a, b, fresh), g)))
    print("| stride | pairs | trained PSNR | freshly initialised PSNR |")
    print("|---|---|---|---|")
    for stride, v in sorted(scores.items()):
        arr = np.array(v)
        print(f"| {stride} | {len(v)} | {arr[:, 0].mean():.2f} | {arr[:, 1].mean():.2f} |")


if __name__ == "__main__":
    main()
