"""How much ``interp --adapt`` gives, measured without letting it see what it is scored on (``make compare``'s
adapt column, ``tools/time_pairs.py --adapt-items``).

For an item (a video or a folder of frames) and a stride s, the input is the item keeping only every (2s)-th frame
(frames 0, 2s, 4s...): the adaptation is given a folder of those frames and nothing else. Each kept pair
``(k, k + 2s)`` is then interpolated at its middle, and the frame halfway between them, ``k + s``, which the input
never held, is the truth. The same weights without adaptation are scored on the same frames, in the same process.
"""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from framefill.adapt import AdaptConfig, adapt_model
from framefill.eval_metrics import psnr
from framefill.frames import write_image
from framefill.interpolate import interpolate_pair
from framefill.models import load_model
from framefill.pipeline import prepare_interpolator
from framefill.video import FrameSource


def protocol_frames(n: int, stride: int, limit: int | None = None) -> tuple[list[int], list[int]]:
    """(the kept frames, the scored frames) of an item of ``n`` frames at ``stride``: every ``2 * stride``-th frame
    is kept; the scored ones are halfway between two kept frames (at most ``limit`` of them, evenly spread)."""
    kept = list(range(0, n, 2 * stride))
    scored = [k + stride for k in kept[:-1]]
    if limit is not None and len(scored) > limit:
        scored = [scored[int(i)] for i in np.linspace(0, len(scored) - 1, limit)]
    return kept, scored


def score_item(item: Path, stride: int, weights: Path, *, device: torch.device, dtype: torch.dtype,
               cfg: AdaptConfig | None = None, limit: int = 4) -> dict:
    """One item at one stride: PSNR of the weights with and without adaptation on the scored frames, the
    adaptation's wall time and report (see the module docstring)."""
    with FrameSource(Path(item)) as source:
        n = source.info.n_frames or sum(1 for _ in source)
        kept, scored = protocol_frames(n, stride, limit)
        wanted = set(kept) | set(scored)
        frames = {k: f for k, f in enumerate(source) if k in wanted}
    base, _ = load_model(Path(weights), expect="film")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "kept"
        folder.mkdir()
        for j, k in enumerate(kept):
            write_image(folder / f"{j:06d}.png", frames[k])
        start = time.perf_counter()
        adapted, report = adapt_model(folder, base, device=device, dtype=dtype, cfg=cfg, in_fps=Fraction(30))
        seconds = time.perf_counter() - start
    nets = {"base": prepare_interpolator(load_model(Path(weights), expect="film")[0], device, dtype),
            "adapt": prepare_interpolator(adapted, device, dtype)}
    scores: dict[str, list[float]] = {name: [] for name in nets}
    for m in scored:
        a, b = frames[m - stride], frames[m + stride]
        for name, net in nets.items():
            scores[name].append(psnr(interpolate_pair(a, b, net, device=device, dtype=dtype), frames[m]))
    return {"item": Path(item).stem if Path(item).is_file() else Path(item).name, "stride": stride,
            "n": len(scored), "kept_frames": len(kept), "psnr_base": float(np.mean(scores["base"])),
            "psnr_adapt": float(np.mean(scores["adapt"])), "adapt_seconds": round(seconds, 1),
            "per_frame": {name: [round(x, 3) for x in v] for name, v in scores.items()}, **report.to_dict()}
