"""Speed and memory of a model alone, as the scheduler calls it (``framefill bench``'s model rows).

Model alone. ``model(img0, img1)`` (four-frame models: ``model(windows)``) on random frames of each size, padded
to the model's multiple as the scheduler pads them, ``batch`` pairs per call, under ``torch.inference_mode()``,
called through the scheduler's own runner (``pairs.Runner.call``: channels_last on the CPU, the time argument
for models that take one), untiled. Frames are float32 whatever the
precision, as the scheduler gives them: the models convert them for their convolutions. ``warmup`` untimed calls, then
``repeat`` timed ones, with ``torch.cuda.synchronize()`` before and after each on CUDA; the median is reported
(every time is in the JSON). Frames per second = ``batch / median``. Speed does not depend on the weights, so a
preset without matching shipped weights is timed with random ones (the ``weights`` column says which).

Memory, over the timed calls:
- CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``: tensors torch allocated,
  weights included; not the caching allocator's spare memory or the CUDA context.
- CPU: the peak resident set size of the whole process (Python, torch and the weights included) during the
  calls, read from VmHWM after resetting it through ``/proc/self/clear_refs`` (Linux), and its rise over the
  resident size just before them: the rise is the model's working memory. Where that reset is not possible,
  the process's lifetime peak (``getrusage``) is given instead, which never goes down; ``memory_kind`` says
  which.
Per pixel: ``rise_bytes_per_px`` is the rise over the padded pixels of the batch (``B/px``): on CUDA the model's
working memory per pixel of one pair; on the CPU it reads low, since after the warm-up calls the allocator
reuses memory it already holds. ``est_bytes_per_px`` (``est B/px``) is what ``--max-memory`` plans with
(``framefill.memory.bytes_per_pixel``, measured on a small probe call; on the CPU the tensors' peak times 2):
on CUDA the two should agree within a few percent.

torch.compile (``compile=True``): each model is also compiled (``dynamic=False``, fresh per measurement) and
timed the same way; the first call's time, compilation included, is ``compile_seconds``. Where compiling
fails the row says so (``status``) and the bench goes on.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from framefill.memory import bytes_per_pixel
from framefill.models.layers import pad_to_multiple
from framefill.pairs import Runner
from framefill.schedule import HALF, InterpolationStats, is_windowed

log = logging.getLogger(__name__)


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory over a ``with`` block, in MB: ``peak``, its ``rise`` over the start, and ``kind``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak: float | None = None
        self.rise: float | None = None
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
            self.kind = "cuda max_memory_allocated"
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM (the peak RSS) to the current RSS
            self.kind = "cpu peak RSS (VmHWM reset per measurement)"
            self._start = (_status_kb("VmRSS") or 0) / 1024
        except OSError:
            self.kind = "cpu lifetime peak RSS (getrusage; never goes down)"
            self._start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._start is not None:
            self.peak = (_status_kb("VmHWM") or 0) / 1024
        else:
            try:
                import resource
            except ImportError:  # Windows
                self.kind = "unavailable"
                return
            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak = maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KB on Linux
        if self._start is not None and self.peak is not None:
            self.rise = max(0.0, self.peak - self._start)


@dataclass
class ModelRow:
    model: str
    preset: str
    weights: str  # "shipped (film.safetensors)" or "random"
    size: str  # WxH asked for
    padded: str  # WxH the model ran at
    dtype: str
    batch: int
    compiled: bool
    status: str = "ok"  # or what went wrong: "unavailable: ...", "out of memory", "failed: ..."
    ms_median: float | None = None  # per call
    ms_min: float | None = None
    fps: float | None = None  # frames per second: batch / median
    times: list[float] = field(default_factory=list)  # seconds per timed call
    compile_seconds: float | None = None  # first call of a compiled model, compilation included
    peak_mb: float | None = None
    rise_mb: float | None = None
    memory_kind: str = ""
    rise_bytes_per_px: float | None = None  # rise_mb per padded pixel of one pair
    est_bytes_per_px: float | None = None  # working memory per pixel that tiling (--max-memory) plans with


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def failure_status(e: BaseException) -> str:
    """What a row's ``status`` says for an exception: "out of memory", or "failed: Type: first line"."""
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate" in text:
        return "out of memory"
    return f"failed: {type(e).__name__}: {text}"


def measure_model(net: torch.nn.Module, row: ModelRow, device: torch.device, dtype: torch.dtype, *,
                  repeat: int, warmup: int) -> ModelRow:
    """Fill ``row`` with the timings and memory of ``net`` (compiled first if ``row.compiled``)."""
    w, h = (int(v) for v in row.size.split("x"))
    div = int(getattr(net, "divisor", 1))
    hp, wp = math.ceil(h / div) * div, math.ceil(w / div) * div
    row.padded = f"{wp}x{hp}"
    gen = torch.Generator(device=device).manual_seed(0)
    windowed = is_windowed(net)
    if windowed:  # as the four-frame scheduler calls it: (B, 4, 3, Hp, Wp) windows
        x0 = torch.rand(row.batch, 4, 3, hp, wp, device=device, generator=gen)
    else:  # as the scheduler pads its frames
        x0 = pad_to_multiple(torch.rand(row.batch, 3, h, w, device=device, generator=gen), div)[0]  # (B, 3, Hp, Wp)
        x1 = pad_to_multiple(torch.rand(row.batch, 3, h, w, device=device, generator=gen), div)[0]
    fn: Callable = net  # four-frame models: called on the windows as WindowRunner calls them
    runner = plain = Runner(net, device, dtype, InterpolationStats())  # two-frame models: the scheduler's own call

    def forward() -> torch.Tensor:
        return fn(x0) if windowed else runner.call(x0, x1, [HALF] * row.batch)

    try:
        with torch.inference_mode():
            if row.compiled:
                try:
                    torch._dynamo.reset()  # a fresh compile per shape: never the recompile limit's silent eager
                    fn = torch.compile(net, dynamic=False)
                    runner = Runner(fn, device, dtype, InterpolationStats())
                    start = time.perf_counter()
                    forward()
                    _sync(device)
                    row.compile_seconds = time.perf_counter() - start
                except Exception as e:  # any compiler failure means "not available here"
                    log.debug("torch.compile failed", exc_info=True)
                    row.status = f"unavailable: {failure_status(e).removeprefix('failed: ')}"
                    return row
            for _ in range(warmup):
                forward()
            _sync(device)
            with PeakMemory(device) as mem:
                for _ in range(repeat):
                    _sync(device)
                    start = time.perf_counter()
                    forward()
                    _sync(device)
                    row.times.append(time.perf_counter() - start)
    except Exception as e:  # one combination failing (memory, an op without bf16) ends its row only
        log.debug("measurement failed", exc_info=True)
        row.status = failure_status(e)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return row
    med = statistics.median(row.times)
    row.ms_median, row.ms_min, row.fps = med * 1000, min(row.times) * 1000, row.batch / med
    row.peak_mb, row.rise_mb, row.memory_kind = mem.peak, mem.rise, mem.kind
    if mem.rise is not None:
        row.rise_bytes_per_px = mem.rise * 2**20 / (row.batch * hp * wp)
    if windowed:  # the need of one window (a, a, b, b), as tiling would plan it
        row.est_bytes_per_px = bytes_per_pixel(net, lambda a, b: net(torch.stack([a, a, b, b], dim=1)), device,
                                               dtype, div)
    else:
        row.est_bytes_per_px = bytes_per_pixel(net, lambda a, b: plain.call(a, b, [HALF] * a.shape[0]), device, dtype,
                                               div)
    return row
