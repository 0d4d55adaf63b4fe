"""How good is the film model's parameter-free path? PSNR of freshly initialised ``film-s`` models, whose
learned flow residuals and fusion head start at zero, so the output is the plain average of the two inputs
warped by the Lucas-Kanade flow alone (with the blend fallback where it is on), for a few settings, on the
triplets of a run_peers list, per stride.

    python tools/lk_sweep.py LIST
    python tools/lk_sweep.py LIST --try lk_window=13 --try pyramid_levels=7,lk_iters=12   # film-s and these

    python tools/lk_sweep.py LIST --weights weights/film.safetensors --try pyramid_levels=7 --items

``--weights`` scores those trained weights with each row's settings (the weights stay as they are: the feature
pyramid and flow estimators are shared across scales) instead of freshly initialised ``film-s`` models. With more
than one row, two more rows say what choosing between them could give: the best row per triplet and per
``--block`` square of pixels (oracles: they read the truth). ``--items`` adds a table of each item and stride (the
list's names, less their ``_NNNN_sS`` ending) against the first row: which footage each setting helps and which it
costs.

The settings were chosen on triplets of the *training* clips, not on the validation triplets that `make compare`
writes; LIST was made in ../shared/data/train/videos by

    /tmp/peers-venv/bin/python ../../tools/peers/clip_triplets.py 01_dog.mp4 03_blocks.mp4 04_coffee.mp4 \
        05_default_juggle.mp4 bikes.mp4 car-detection.mp4 tree.avi moviepy_example2_bbb_720p.mp4 bedroom.mp4 \
        cup.mp4 tlbvfi_vfi_test_480p.mp4 carphone_pristine.mp4 --count 3 --strides 1,2,3 --out /tmp/traintrip
(103 triplets; LIST is /tmp/traintrip/list.txt).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from framefill.frames import read_image
from framefill.interpolate import interpolate_pair
from framefill.models import load_model
from framefill.models.film import Film, build_film

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
    ap.add_argument("--weights", type=Path, help="score these trained weights with each row's settings")
    ap.add_argument("--items", action="store_true", help="also each item and stride against the first row")
    ap.add_argument("--block", type=int, default=16, help="pixels a side of the per-block best of the rows")
    args = ap.parse_args()
    settings = SETTINGS
    if args.tries:
        first = "film-s" if args.weights is None else "as loaded"
        settings = {first: {}} | {t: {k: _value(v) for k, v in (kv.split("=") for kv in t.split(","))}
                                  for t in args.tries}
    trips = []
    for line in args.list.read_text().splitlines():
        f0, f1, gt, name = line.split()[:4]
        trips.append((read_image(Path(f0)), read_image(Path(f1)), read_image(Path(gt)), name))
    strides = sorted({_stride(t[3]) for t in trips})
    print("| Lucas-Kanade setting | " + " | ".join(f"{s} PSNR" for s in strides) + " | s/frame |")
    print("|---|" + "---|" * len(strides) + "---|")
    trained = None if args.weights is None else load_model(args.weights, expect="film")[0]
    models = {label: _model(trained, overrides) for label, overrides in settings.items()}
    rows: dict[str, list[float]] = {label: [] for label in models}
    secs = dict.fromkeys(models, 0.0)
    oracle: dict[str, list[float]] = {"the best row per triplet": [], f"the best row per {args.block} px block": []}
    for a, b, g, _ in trips:
        frames = []
        for label, model in models.items():
            start = time.perf_counter()
            frames.append(interpolate_pair(a, b, model))
            secs[label] += time.perf_counter() - start
            rows[label].append(psnr(frames[-1], g))
        oracle["the best row per triplet"].append(max(r[-1] for r in rows.values()))
        oracle[f"the best row per {args.block} px block"].append(_block_oracle(frames, g, args.block))
    for label, scores in (rows | (oracle if len(models) > 1 else {})).items():
        by = [np.mean([p for p, t in zip(scores, trips, strict=True) if _stride(t[3]) == s]) for s in strides]
        sec = f"{secs[label] / len(trips):.2f}" if label in secs else ""
        print(f"| {label} | " + " | ".join(f"{m:.2f}" for m in by) + f" | {sec} |")
    if args.items:
        _items(rows, [t[3] for t in trips])


def _block_oracle(frames: list[np.ndarray], truth: np.ndarray, block: int) -> float:
    """PSNR of the frame that takes, per ``block`` square of pixels, whichever of ``frames`` is closest to the truth
    (8-bit RGB): what a perfect per-region choice between the settings would give."""
    h, w = truth.shape[0] // block * block, truth.shape[1] // block * block
    err = [((f[:h, :w].astype(np.float64) - truth[:h, :w]) ** 2).mean(2) for f in frames]
    per_block = np.stack([e.reshape(h // block, block, w // block, block).mean((1, 3)) for e in err])
    return float(10 * np.log10(255**2 / per_block.min(0).mean()))


def _stride(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def _item_stride(name: str) -> str:
    """A pair's item and stride, ``02_cups s1`` for ``02_cups_0000_s1``."""
    return f"{name.rsplit('_', 2)[0]} {_stride(name)}"


def _model(trained: torch.nn.Module | None, overrides: dict) -> torch.nn.Module:
    """A freshly initialised film-s with ``overrides`` (seeded), or the ``trained`` model's weights with them."""
    torch.manual_seed(0)
    if trained is None:
        return build_film("film-s", **overrides).eval()
    model = Film(dataclasses.replace(trained.config, **overrides))
    model.load_state_dict(trained.state_dict())
    return model.eval()


def _items(rows: dict[str, list[float]], names: list[str]) -> None:
    """Per item and stride, each row's mean PSNR less the first row's, and over all: the mean and the worst triplet."""
    first, *rest = rows
    keys = list(dict.fromkeys(_item_stride(n) for n in names))
    print("\n| item stride | n | " + first + " | " + " | ".join(rest) + " |")
    print("|---|---|---|" + "---|" * len(rest))
    for key in keys:
        idx = [i for i, n in enumerate(names) if _item_stride(n) == key]
        base = np.mean([rows[first][i] for i in idx])
        gains = [np.mean([rows[r][i] for i in idx]) - base for r in rest]
        print(f"| {key} | {len(idx)} | {base:.2f} | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")
    diff = {r: np.array(rows[r]) - np.array(rows[first]) for r in rest}
    print(f"| all (mean; worst triplet) | {len(names)} | {np.mean(rows[first]):.2f} | "
          + " | ".join(f"{d.mean():+.3f}; {d.min():+.2f}" for d in diff.values()) + " |")


if __name__ == "__main__":
    main()
