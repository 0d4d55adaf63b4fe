"""CPU cost of convlstm against film per frame, measured in one run with the calls interleaved.

    python tools/convlstm_cost.py [--size 1280x720] [--repeat 6] [--dtype bf16]

Each repeat calls film-s on (I1, I2) and convlstm-s on (I0..I3) one after the other, so load from other processes
falls on both alike; prints the minimum and median wall and CPU (process) time of each and the ratios. Random
weights: the time does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from framefill.models import build_model
from framefill.models.layers import pad_to_multiple


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    torch.manual_seed(0)
    models = {name: build_model(name.split("-")[0], name).eval().to(dtype).to(memory_format=torch.channels_last)
              for name in ("film-s", "convlstm-s")}
    x, _ = pad_to_multiple(torch.rand(4, 3, h, w), models["convlstm-s"].divisor)  # as the schedulers pad
    calls = {"film-s": lambda: models["film-s"](x[1:2], x[2:3]), "convlstm-s": lambda: models["convlstm-s"](x[None])}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
    with torch.inference_mode():
        for call in calls.values():  # warm-up
            call()
        for _ in range(args.repeat):
            for name, call in calls.items():
                times[name].append(timed(call))
    for name, rows in times.items():
        walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
        print(f"{name:11s} wall min {min(walls):.3f} median {statistics.median(walls):.3f} s; "
              f"cpu min {min(cpus):.3f} median {statistics.median(cpus):.3f} s")
    f, c = times["film-s"], times["convlstm-s"]
    for i, what in enumerate(("wall", "cpu")):
        ratio_min = min(r[i] for r in c) / min(r[i] for r in f)
        ratio_med = statistics.median(r[i] for r in c) / statistics.median(r[i] for r in f)
        print(f"convlstm-s / film-s {what}: {ratio_min:.2f} (minima), {ratio_med:.2f} (medians)")


if __name__ == "__main__":
    main()
