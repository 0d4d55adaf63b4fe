"""Where a model's time goes on a device (the CPU or CUDA): a few calls under torch.profiler, by kind and by part.

    python tools/profile_model.py [--device auto] [--model film] [--preset film-s] [--size 1280x720]
        [--precision auto] [--batch 1] [--warmup 3] [--repeat 5] [--json profile.json]

The model (random weights of the preset: speed does not depend on them) is called through the scheduler's runner,
as ``framefill bench`` calls it, after ``--warmup`` untimed calls; on the CPU with freed memory kept for reuse, as
``framefill interp`` runs there (``framefill.allocator``). Reported:
- the wall time per call (CUDA events on a GPU, ``perf_counter`` on the CPU), and per top-level part of the model
  (for film: the feature extractor, the flow pyramid, the fusion; the rest is the forward's own code: pyramids,
  the matching at time t, warps, the blend fallback), each timed the same way;
- under the profiler: the device time per kind of kernel or op (convolution, concatenation, padding, layout
  copies, warping, resampling, reductions, elementwise: on a CPU mostly film's Lucas-Kanade steps and box filters),
  the 15 that take most, and on a GPU the kernels launched per call (many small kernels on an idle GPU mean the
  call is bound by launches: CUDA graphs or torch.compile help);
- on the CPU, minor page faults, kernel (system) time per call and the peak resident memory: the cost of fresh
  memory that ``framefill.allocator.keep_freed_memory`` saves (``FRAMEFILL_MALLOC_TUNING=0`` to see it without).
tools/gpu_run.sh runs it as its ``profile`` stage.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction

import torch
from torch.profiler import ProfilerActivity, profile

from framefill.allocator import keep_freed_memory
from framefill.interpolate import InterpolationStats, Runner
from framefill.models import build_model
from framefill.models.layers import pad_to_multiple
from framefill.pipeline import resolve_device, resolve_dtype

KINDS = (  # first match wins; names of aten ops (CPU) and of CUDA kernels
    ("convolution", ("conv", "xmma", "gemm", "cudnn", "implicit", "winograd", "cutlass", "mkldnn")),
    ("concatenation", ("aten::cat", "catarray")),
    ("padding", ("pad",)),
    ("layout copies", ("nchwtonhwc", "nhwctonchw", "copy", "contiguous", "transpose", "permute")),
    ("warping (grid_sample)", ("grid_sampler",)),
    ("resampling (interpolate, pooling)", ("upsample", "pool", "pixel_")),
    ("reductions", ("reduce", "aten::sum", "aten::mean", "norm")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "elementwise and other"


class Clock:
    """Elapsed seconds of a region: CUDA events on a GPU (no synchronisation inside), perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.spans: list[tuple] = []

    def start(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, begun: object) -> None:
        self.spans.append((begun, self.start()))

    def total(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return sum(a.elapsed_time(b) for a, b in self.spans) / 1000
        return sum(b - a for a, b in self.spans)


def parts_hooks(net: torch.nn.Module, clocks: dict[str, Clock], device: torch.device) -> list:
    handles = []
    for name, child in net.named_children():
        clocks[name] = Clock(device)
        begun: list[object] = []

        def pre(*_: object, clock: Clock = clocks[name], begun: list = begun) -> None:
            begun.append(clock.start())

        def post(*_: object, clock: Clock = clocks[name], begun: list = begun) -> None:
            clock.stop(begun.pop())

        handles += [child.register_forward_pre_hook(pre), child.register_forward_hook(post)]
    return handles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="film")
    ap.add_argument("--preset", default="film-s")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    kept = keep_freed_memory() if device.type == "cpu" else False  # as framefill interp does on the CPU
    torch.manual_seed(0)
    net = build_model(args.model, args.preset).eval().to(device=device, dtype=dtype)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)  # as load_interpolator does
    w, h = (int(v) for v in args.size.split("x"))
    div = int(getattr(net, "divisor", 1))
    x0, x1 = (pad_to_multiple(torch.rand(args.batch, 3, h, w, device=device), div)[0] for _ in range(2))
    runner = Runner(net, device, dtype, InterpolationStats())
    call: Callable[[], torch.Tensor] = lambda: runner.call(x0, x1, [Fraction(1, 2)] * args.batch)  # noqa: E731

    with torch.inference_mode():
        for _ in range(args.warmup):
            call()
        whole, clocks = Clock(device), {}
        handles = parts_hooks(net, clocks, device)
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(args.repeat):
            begun = whole.start()
            call()
            whole.stop(begun)
        after = resource.getrusage(resource.RUSAGE_SELF)
        for handle in handles:
            handle.remove()
        per_call = whole.total() / args.repeat
        parts = {name: clock.total() / args.repeat for name, clock in clocks.items()}
        parts["rest of forward"] = per_call - sum(parts.values())
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(args.repeat):
                call()
            if device.type == "cuda":
                torch.cuda.synchronize()

    def own_time(event: object) -> float:  # microseconds on the device (kernels) or the CPU (ops)
        if device.type == "cuda":
            return float(getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0))
        return float(event.self_cpu_time_total)

    events = [e for e in prof.key_averages() if own_time(e) > 0]
    total = sum(own_time(e) for e in events) or 1.0
    kinds: dict[str, float] = defaultdict(float)
    for e in events:
        kinds[kind_of(e.key)] += own_time(e)
    top = sorted(events, key=own_time, reverse=True)[:15]
    launches = sum(e.count for e in events) / args.repeat if device.type == "cuda" else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.preset} at {w}x{h}, batch {args.batch}, {str(dtype).removeprefix('torch.')} on {name}: "
          f"{per_call * 1000:.2f} ms per call ({args.batch / per_call:.1f} frames/s)")
    print("by part: " + ", ".join(f"{k} {v * 1000:.2f} ms ({v / per_call:.0%})" for k, v in parts.items()))
    where = "device" if device.type == "cuda" else "CPU"
    print(f"{where} time under the profiler: {total / args.repeat / 1000:.2f} ms per call"
          + (f", {launches:.0f} kernels launched per call" if launches is not None else ""))
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind}: {t / total:.0%} ({t / args.repeat / 1000:.2f} ms)")
    print("top kernels:" if device.type == "cuda" else "top ops:")
    for e in top:
        print(f"  {own_time(e) / total:6.1%}  {e.count // args.repeat:5d}x  {e.key[:110]}")
    if device.type == "cpu":
        print(f"per call: {(after.ru_minflt - before.ru_minflt) / args.repeat:,.0f} minor page faults, "
              f"{(after.ru_stime - before.ru_stime) / args.repeat:.3f} s of kernel time (freed memory kept for "
              f"reuse: {'yes' if kept else 'no'}); peak RSS {after.ru_maxrss / 1024:,.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "size": args.size, "batch": args.batch, "dtype": str(dtype),
                       "device": name, "ms_per_call": per_call * 1000,
                       "parts_ms": {k: v * 1000 for k, v in parts.items()},
                       "kinds_ms": {k: v / args.repeat / 1000 for k, v in kinds.items()},
                       "launches_per_call": launches,
                       "top": [{"name": e.key, "ms": own_time(e) / args.repeat / 1000, "calls": e.count / args.repeat}
                               for e in top]}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
