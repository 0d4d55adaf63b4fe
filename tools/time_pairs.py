"""Time framefill on the pairs of a run_peers list: array in -> array out, one warm-up, median of repeats.

    python tools/time_pairs.py LIST [--repeat 3] [--json OUT.json] [--weights W] [--device cpu] [--precision auto]
The same quantity as run_peers' ``sec_core`` for the in-process peers (model loading excluded), in the
precision ``framefill interp`` picks (``--precision auto``) unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from framefill.frames import read_image
from framefill.interpolate import interpolate_pair
from framefill.pipeline import load_interpolator, resolve_device, resolve_dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="film")
    ap.add_argument("--precision", default="auto", help="auto (as framefill interp), fp32, bf16, fp16")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, dev)
    net = load_interpolator(args.model, args.weights, dev, dtype)
    rows = []
    for line in Path(args.list).read_text().splitlines():
        parts = line.split("#")[0].split()
        if not parts:
            continue
        a, b = read_image(Path(parts[0])), read_image(Path(parts[1]))
        name = parts[3] if len(parts) > 3 else Path(parts[0]).parent.name
        interpolate_pair(a, b, net, device=dev, dtype=dtype)  # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            interpolate_pair(a, b, net, device=dev, dtype=dtype)
            times.append(time.perf_counter() - t0)
        rows.append({"pair": name, "width": a.shape[1], "height": a.shape[0], "sec_core": statistics.median(times),
                     "sec_core_min": min(times), "threads": torch.get_num_threads(),
                     "precision": str(dtype).removeprefix("torch.")})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
