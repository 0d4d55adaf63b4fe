"""Where a model's time goes on this machine: one call at a size, under torch.profiler, grouped by kind of op.

    python tools/profile_model.py [--model film] [--size 1280x720] [--repeat 3] [--precision auto]
Shipped weights (or random ones for a model without them); CPU self time per op, summed over ``--repeat`` calls
after a warm-up, grouped: convolutions, warping (grid_sample), resampling (interpolate, pooling), and the rest
(elementwise arithmetic, concatenation, reductions: mostly the Lucas-Kanade steps and box filters for film).
Then, without the profiler, the wall time of each of the model's top-level parts (for film: the feature extractor,
the flow pyramid, the fusion U-Net; the rest is the forward's own code: pyramids, warps, fallback, blend), minor
page faults and kernel (system) CPU time per call: the cost of
fresh memory that ``framefill.allocator.keep_freed_memory`` saves (``FRAMEFILL_MALLOC_TUNING=0`` to see it without).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from framefill.allocator import keep_freed_memory
from framefill.models import build_model, default_weights, load_model
from framefill.pipeline import resolve_dtype
from framefill.windows import is_windowed

GROUPS = {
    "convolution": ("conv", "mkldnn_convolution"),
    "warping (grid_sample)": ("grid_sampler",),
    "resampling (interpolate, pooling, pixel shuffle)": ("upsample", "pool", "pixel_"),
}


def group_of(name: str) -> str:
    for group, keys in GROUPS.items():
        if any(k in name for k in keys):
            return group
    return "other (elementwise, cat, reductions)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="film")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precision", default="auto", help="auto (as framefill interp picks on this CPU), fp32, bf16")
    args = ap.parse_args()
    dtype = resolve_dtype(args.precision, torch.device("cpu"))
    path = default_weights(args.model)
    net = load_model(path)[0] if path.exists() else build_model(args.model).eval()
    net = net.to(dtype=dtype).to(memory_format=torch.channels_last)
    kept = keep_freed_memory()  # as framefill interp does on the CPU
    w, h = (int(v) for v in args.size.split("x"))
    d = net.divisor
    h, w = -(-h // d) * d, -(-w // d) * d
    if is_windowed(net):
        inputs = (torch.rand(1, 4, 3, h, w),)
    else:
        inputs = tuple(torch.rand(1, 3, h, w).contiguous(memory_format=torch.channels_last) for _ in range(2))
    with torch.inference_mode():
        net(*inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.repeat):
                net(*inputs)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[group_of(event.key)] += event.self_cpu_time_total
    whole = sum(totals.values())
    print(f"{args.model} at {w}x{h}, {str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads: "
          f"{whole / args.repeat / 1e6:.3f} s per call")
    for group, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {group}: {t / whole:.0%} ({t / args.repeat / 1e6:.3f} s)")
    parts: dict[str, float] = defaultdict(float)  # seconds in each top-level child module

    def clock(name: str, sign: int) -> Callable[..., None]:
        def hook(*_: object) -> None:
            parts[name] += sign * time.perf_counter()  # minus at entry, plus at exit: the time inside
        return hook

    for name, child in net.named_children():
        child.register_forward_pre_hook(clock(name, -1))
        child.register_forward_hook(clock(name, 1))
    with torch.inference_mode():
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.repeat):
            net(*inputs)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    parts["rest of forward"] = wall - sum(parts.values())
    print("by part: " + ", ".join(f"{name} {t / args.repeat:.3f} s ({t / wall:.0%})" for name, t in parts.items()))
    print(f"without the profiler: {wall / args.repeat:.3f} s per call, "
          f"{(after.ru_minflt - before.ru_minflt) / args.repeat:,.0f} minor page faults and "
          f"{(after.ru_stime - before.ru_stime) / args.repeat:.3f} s of kernel time per call "
          f"(freed memory kept for reuse: {'yes' if kept else 'no'}); peak RSS {after.ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
