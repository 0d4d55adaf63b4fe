"""Quality at times other than the middle: film asked for each time directly, or by bisection at t = 0.5.

From every clip under DATA, windows of SPAN + 1 frames (inputs i and i + SPAN, truths i + 1 .. i + SPAN - 1 at
t = j / SPAN), up to ``--per-clip`` per clip and span, spread evenly over the starts that pass the training
sampler's skips (no static window, duplicate or cut). Each weights file is scored twice: ``bisect`` is what
``framefill interp`` does with a model trained at t = 0.5 (times snapped to the 1/8 grid and reached by
halving: t = 1/3 becomes 3/8, made from the input and the middle frame); ``direct`` asks the model for the
exact t in one call (what ``interp`` does with a model trained with ``--arbitrary-time``). ``blend`` is the
linear blend at t. PSNR (dB) per span and time, on 8-bit frames:

    python tools/time_eval.py ../shared/data/val/videos --weights weights/film.safetensors [more.safetensors]
"""

from __future__ import annotations

import argparse
import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from framefill.interpolate import interpolate_pair
from framefill.models import default_weights, load_model
from framefill.train.data import DataConfig, find_clips, load_clip, valid_triplets


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2), 1e-10)))


def windows(data: Path, spans: list[int], per_clip: int, max_side: int) -> list[tuple[str, int, np.ndarray]]:
    """``(clip name, span, frames (span + 1, H, W, 3))`` for every chosen window."""
    out = []
    cfg = DataConfig(max_side=max_side, max_frames=10_000)
    for path in find_clips(data):
        frames = load_clip(path, cfg, None)
        for span in spans:
            # the skips of triplets (i, i + s, i + 2s) with 2s >= span: an odd span is checked one frame further
            starts = valid_triplets(frames[:len(frames) - (span % 2)], (span + 1) // 2, cfg)
            if not len(starts):
                continue
            for i in starts[np.linspace(0, len(starts) - 1, min(per_clip, len(starts))).astype(int)]:
                out.append((path.stem, span, frames[int(i):int(i) + span + 1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--weights", type=Path, nargs="+", default=[default_weights("film")])
    ap.add_argument("--spans", default="3,4", help="comma list of input spacings (frames)")
    ap.add_argument("--per-clip", type=int, default=5)
    ap.add_argument("--max-side", type=int, default=1280, help="clips are downscaled to this longer side")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spans = [int(s) for s in args.spans.split(",")]
    items = windows(args.data, spans, args.per_clip, args.max_side)
    methods: dict[str, torch.nn.Module | None] = {"blend": None}
    for w in args.weights:
        model, _ = load_model(w, expect="film")
        tag = w.stem if len(args.weights) > 1 else "film"
        methods[f"{tag} bisect"], methods[f"{tag} direct"] = _as(model, False), _as(model, True)
    scores: dict[tuple[str, int, Fraction], list[float]] = {}
    for _, span, frames in items:
        a, b = frames[0], frames[-1]
        for j in range(1, span):
            t = Fraction(j, span)
            for name, model in methods.items():
                if model is None:
                    pred = np.round(a * (1 - float(t)) + b * float(t)).astype(np.uint8)
                else:
                    pred = interpolate_pair(a, b, model, t)
                scores.setdefault((name, span, t), []).append(psnr(pred, frames[j]))
    print(f"{len(items)} windows from {args.data} ({args.per_clip} per clip and span at most)\n")
    print("| span | t | windows | " + " | ".join(methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for span in spans:
        for j in range(1, span):
            t = Fraction(j, span)
            row = [np.mean(scores[(m, span, t)]) for m in methods if (m, span, t) in scores]
            if row:
                n = len(scores[(next(iter(methods)), span, t)])
                print(f"| {span} | {t} | {n} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


def _as(model: torch.nn.Module, arbitrary: bool) -> torch.nn.Module:
    """The same weights with ``config.arbitrary_time`` set as given (a shallow copy: the weights are shared)."""
    import copy

    twin = copy.copy(model)
    twin.config = dataclasses.replace(model.config, arbitrary_time=arbitrary)
    return twin


if __name__ == "__main__":
    main()
