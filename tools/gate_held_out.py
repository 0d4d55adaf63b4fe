"""convlstm gates side by side on the held-out windows of a gate run's cache: the windows none of them trained on.

    python tools/gate_held_out.py OUT/gate_cache.pt weights/convlstm.safetensors OUT/convlstm.safetensors

A gate run (``framefill train --model convlstm --gate N``) holds out the last tenth of its cached windows and scores
its own gate on them (``OUT/gate_held_out.json``). Gates of runs with other windows hold out other windows; this
scores each given convlstm weights file's gate on the held-out windows of one cache (``train.window_gate``'s
``held_out_scores``: film's frame, the gated frame, the frame with all of the correction, the mean opening), so
that a new gate can be compared with the shipped one on windows neither has seen (the cache's run must have drawn
its training windows apart from them: the same seed and a count at least the other run's). One JSON line per file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from framefill.pipeline import load_interpolator
from framefill.train.cached import split_held
from framefill.train.window_gate import held_out_scores


def scores(cache_path: Path, weights: list[Path]) -> list[dict]:
    """``held_out_scores`` of each weights file's gate on the held-out windows of the cache at ``cache_path``."""
    _, held = split_held(torch.load(cache_path, mmap=True))
    rows = []
    for w in weights:
        net = load_interpolator("convlstm", w, torch.device("cpu"), torch.float32)
        if net.gate is None:
            raise SystemExit(f"error: {w} has no window gate")
        with torch.no_grad():
            rows.append({"weights": str(w), "windows": len(held["truth"])} | held_out_scores(net.gate, held))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path, help="a gate run's OUT/gate_cache.pt")
    ap.add_argument("weights", type=Path, nargs="+", help="convlstm weights files")
    args = ap.parse_args()
    for row in scores(args.cache, args.weights):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
