"""Score a four-frame model on the triplets of a run_peers list, with each triplet's outer frames from its clip.

    python tools/window_scores.py LIST CLIP [CLIP ...] [--model convlstm] [--init] [--merge RESULTS.json]
        --json OUT.json

The list is clip_triplets.py's: directories named ``CLIP_INDEX_sSTRIDE`` holding frame0/gt/frame1 PNGs of the clip
``CLIP`` (a video or a frame folder) at frames i, i + s, i + 2s. The model reads those PNGs (the very frames the
peers get) and, as the window's outer frames, frames i - 2s and i + 4s of the clip, decoded with OpenCV as
clip_triplets.py decodes them (missing ones at the clip's ends are copies of the pair, as in a video). PSNR/SSIM as
run_peers computes them (8-bit RGB; SSIM with an 11x11 Gaussian window, per channel), ``sec_core`` the median of
``--repeat`` timed calls after a warm-up (none with ``--repeat 0``; array in, array out, as tools/time_pairs.py).
Rows are written in run_peers' format (peer ``framefill_<model>``); ``--merge`` appends them to a run_peers
results file, so that tools/peer_table.py prints everyone in one table.

    python tools/window_scores.py held-out OUT/gate_cache.pt WEIGHTS [WEIGHTS ...]

scores instead each convlstm weights file's gate on the held-out windows of one gate run's cache (``framefill train
--model convlstm --gate N`` holds out the last tenth of its windows and scores its own gate on them,
``OUT/gate_held_out.json``; ``train.window_gate.held_out_scores``: film's frame, the gated frame, the frame with
all of the correction, the mean opening), one JSON line per file: a new gate against the shipped one on windows
neither trained on (the cache's run must draw the other run's training windows first and hold out others: the same
seed and a larger count).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill.evaluate import psnr, ssim
from framefill.interpolate import interpolate_pair
from framefill.models import build_model
from framefill.pipeline import load_interpolator, prepare_interpolator, resolve_device, resolve_dtype
from framefill.train.cached import split_held
from framefill.train.window_gate import held_out_scores
from framefill.windows import interpolate_middle, is_windowed


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def clip_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    if path.is_dir():  # a frame folder, in name order (as clip_triplets.py reads it)
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        return {k: read_rgb(files[k]) for k in wanted if k < len(files)}
    cap = cv2.VideoCapture(str(path))
    out, k = {}, 0
    while len(out) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if k in wanted:
            out[k] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        k += 1
    cap.release()
    return out


def held_out(cache_path: Path, weights: list[Path]) -> list[dict]:
    """``held_out_scores`` of each convlstm weights file's gate on the held-out windows of the gate cache at
    ``cache_path``."""
    _, held = split_held(torch.load(cache_path, mmap=True))
    rows = []
    for w in weights:
        net = load_interpolator("convlstm", w, torch.device("cpu"), torch.float32)
        if getattr(net, "gate", None) is None:
            raise SystemExit(f"error: {w} has no window gate")
        with torch.no_grad():
            rows.append({"weights": str(w), "windows": len(held["truth"])} | held_out_scores(net.gate, held))
    return rows


def main() -> None:
    if sys.argv[1:2] == ["held-out"]:
        ap = argparse.ArgumentParser(prog="window_scores.py held-out")
        ap.add_argument("cache", type=Path, help="a gate run's OUT/gate_cache.pt")
        ap.add_argument("weights", type=Path, nargs="+", help="convlstm weights files")
        args = ap.parse_args(sys.argv[2:])
        for row in held_out(args.cache, args.weights):
            print(json.dumps(row), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list", type=Path)
    ap.add_argument("clips", type=Path, nargs="+", help="the clips (videos or frame folders) the list was made from")
    ap.add_argument("--model", default="convlstm")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--merge", type=Path, help="a run_peers results.json to append the rows to")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--precision", default="auto", help="auto (as framefill interp), fp32, bf16, fp16")
    ap.add_argument("--init", action="store_true", help="the weights' film part with every learned stage of the "
                    "four-frame model freshly initialised (rows named framefill_<model>_init)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, dev)
    net = load_interpolator(args.model, args.weights, dev, dtype)
    if args.init:  # convlstm's film is frozen, loaded from film's weights: a fresh convlstm keeps it
        fresh = build_model(args.model, config=net.config.to_dict())
        fresh.film.load_state_dict(net.film.float().state_dict())
        net = prepare_interpolator(fresh, dev, dtype)
    triplets = []
    for line in args.list.read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        name = parts[3] if len(parts) > 3 else Path(parts[0]).parent.name
        m = re.fullmatch(r"(.+)_(\d+)_s(\d+)", name)
        if not m:
            raise SystemExit(f"{name}: not a clip_triplets name CLIP_INDEX_sSTRIDE")
        triplets.append((name, m[1], int(m[2]), int(m[3]), [Path(p) for p in parts[:3]]))
    sources = {p.stem if p.is_file() else p.name: p for p in args.clips}
    outer: dict[tuple[str, int], np.ndarray] = {}
    if is_windowed(net):
        for tag in {t[1] for t in triplets}:
            wanted = {j for _, c, i, s, _ in triplets if c == tag for j in (i - 2 * s, i + 4 * s) if j >= 0}
            outer.update({(tag, k): f for k, f in clip_frames(sources[tag], wanted).items()})
    rows, peer = [], f"framefill_{args.model}" + ("_init" if args.init else "")
    for name, tag, i, s, (p0, p1, pg) in triplets:
        a, b, truth = read_rgb(p0), read_rgb(p1), read_rgb(pg)
        if is_windowed(net):
            before, after = outer.get((tag, i - 2 * s)), outer.get((tag, i + 4 * s))

            def run(a=a, b=b, before=before, after=after) -> np.ndarray:
                return interpolate_middle(a, b, net, before=before, after=after, device=dev, dtype=dtype)
        else:
            def run(a=a, b=b) -> np.ndarray:
                return interpolate_pair(a, b, net, device=dev, dtype=dtype)
        out = run()  # the warm-up, and with --repeat 0 the only call (scores without times)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        sec = statistics.median(times) if times else None
        rows.append({"peer": peer, "pair": name, "psnr": psnr(out, truth), "ssim": ssim(out, truth), "sec_core": sec,
                     "sec_e2e": None})
        print(f"{name}: {rows[-1]['psnr']:.2f} dB" + (f", {sec:.3f} s" if times else ""), flush=True)
    if args.merge:
        rows = json.loads(args.merge.read_text()) + rows
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
