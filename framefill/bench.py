"""Speed and memory of the interpolation models: the model alone, and end to end as ``framefill interp`` runs it.

Model alone. ``model(img0, img1)`` (four-frame models: ``model(windows)``) on random frames of each size, padded
to the model's multiple as the scheduler pads them, ``batch`` pairs per call, under ``torch.inference_mode()``,
called through the scheduler's own runner (``interpolate._Runner.call``: channels_last on the CPU, the time argument
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

End to end. A clip of ``e2e_frames`` frames (a panning texture and a moving square) is written with
framefill's own writer (H.264), then run through ``interpolate_video`` at ``--factor 2`` exactly as
``framefill interp`` runs it (eager model, the largest batch as ``--batch-size``, output H.264, no audio).
Stage times (``pipeline.StageTimes``) are busy times of three threads that overlap: each is also given as a
share of the wall time, and the largest is the bottleneck.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill import __version__
from framefill.allocator import keep_freed_memory
from framefill.checkpoint import WeightsError, read_metadata
from framefill.interpolate import HALF, InterpolationStats, ScheduleConfig, _Runner
from framefill.memory import bytes_per_pixel
from framefill.models import REGISTRY, build_model, default_weights, load_model
from framefill.models.layers import pad_to_multiple
from framefill.pipeline import PRECISIONS, StageTimes, cpu_has_native_bf16, interpolate_video, resolve_dtype
from framefill.video import FrameSink
from framefill.windows import is_windowed

log = logging.getLogger(__name__)

CPU_SIZES = ((960, 540), (1280, 720), (1920, 1080))
CUDA_SIZES = (*CPU_SIZES, (3840, 2160))
DTYPES = PRECISIONS  # the precisions a bench row can use, fp32 first


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; a ValueError that says how to write it otherwise."""
    w, sep, h = text.strip().lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise ValueError(f"--size {text!r} is not WIDTHxHEIGHT; write e.g. 1280x720")
    return int(w), int(h)


def default_sizes(device: torch.device) -> tuple[tuple[int, int], ...]:
    return CUDA_SIZES if device.type == "cuda" else CPU_SIZES


def default_dtypes(device: torch.device) -> tuple[str, ...]:
    """Every precision on CUDA; on the CPU fp32, and bf16 where the CPU has native bf16 instructions."""
    if device.type == "cuda":
        return tuple(DTYPES)
    return ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)


def model_presets(model: str | None = None, presets: list[str] | None = None) -> list[tuple[str, str]]:
    """``(architecture, preset)`` pairs: every registered one, or those of ``model`` / named in ``presets``."""
    archs = [model] if model else sorted(REGISTRY)
    if model and model not in REGISTRY:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(sorted(REGISTRY))}")
    pairs = [(a, p) for a in archs for p in REGISTRY[a][2]]
    if presets:
        known = {p for _, p in pairs}
        if unknown := [p for p in presets if p not in known]:
            raise ValueError(f"unknown preset {unknown[0]!r}; choose from {', '.join(sorted(known))}")
        pairs = [(a, p) for a, p in pairs if p in presets]
    return pairs


def load_for_bench(arch: str, preset: str, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, str]:
    """The model of a preset, ready for inference, and which weights it has: the shipped file if its config is
    the preset's, else random (seeded) ones."""
    path, label = default_weights(arch), "random"
    net = None
    if path.exists() and _shipped_config(path, arch) == REGISTRY[arch][2][preset]:
        try:
            net, _ = load_model(path, expect=arch)
            label = f"shipped ({path.name})"
        except WeightsError as e:  # e.g. the model's code changed since the file was written
            log.info("%s", e)
            label = f"random ({path.name} is this preset but does not load)"
    if net is None:
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's random state
            torch.manual_seed(0)
            net = build_model(arch, preset).eval()
    net = net.to(device=device, dtype=dtype)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)  # as load_interpolator does
        keep_freed_memory()
    return net, label


def _shipped_config(path: Path, arch: str) -> object:
    """The config a weights file was trained with (from its metadata; the tensors are not read), or None."""
    try:
        return getattr(build_model(arch, config=json.loads(read_metadata(path).get("config", "{}"))), "config", None)
    except (WeightsError, ValueError, TypeError):
        return None


# --- memory ---------------------------------------------------------------------------------------------------


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


# --- the model alone ------------------------------------------------------------------------------------------


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


def _failure(e: BaseException) -> str:
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
    runner = plain = _Runner(net, device, dtype, InterpolationStats())  # two-frame models: the scheduler's own call

    def forward() -> torch.Tensor:
        return fn(x0) if windowed else runner.call(x0, x1, [HALF] * row.batch)

    try:
        with torch.inference_mode():
            if row.compiled:
                try:
                    torch._dynamo.reset()  # a fresh compile per shape: never the recompile limit's silent eager
                    fn = torch.compile(net, dynamic=False)
                    runner = _Runner(fn, device, dtype, InterpolationStats())
                    start = time.perf_counter()
                    forward()
                    _sync(device)
                    row.compile_seconds = time.perf_counter() - start
                except Exception as e:  # any compiler failure means "not available here"
                    log.debug("torch.compile failed", exc_info=True)
                    row.status = f"unavailable: {_failure(e).removeprefix('failed: ')}"
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
        row.status = _failure(e)
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


# --- end to end -----------------------------------------------------------------------------------------------


@dataclass
class EndToEndRow:
    model: str
    preset: str
    weights: str
    size: str
    dtype: str
    batch: int  # the scheduler's batch size (interp's --batch-size)
    status: str = "ok"
    frames_in: int = 0
    frames_out: int = 0
    fps_out: float | None = None  # output frames per second of wall time
    stages: dict[str, float] = field(default_factory=dict)  # StageTimes, seconds
    shares: dict[str, float] = field(default_factory=dict)  # decode / model / encode busy time over wall time


def synthetic_frames(width: int, height: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of a smooth random texture panning 3 px a frame, with a white square moving 5 px a frame."""
    rng = np.random.default_rng(seed)
    pan = 3 * n
    noise = rng.random((height // 8 + 2, (width + pan) // 8 + 2, 3)).astype(np.float32)  # coarse: a smooth texture
    texture = cv2.resize(noise, (width + pan, height), interpolation=cv2.INTER_CUBIC)  # (H, W + pan, 3)
    texture = (np.clip(texture, 0, 1) * 255).astype(np.uint8)
    side = max(4, min(width, height) // 8)
    frames = []
    for i in range(n):
        frame = np.ascontiguousarray(texture[:, 3 * i:3 * i + width])  # (H, W, 3)
        x = (5 * i) % max(1, width - side)
        frame[height // 3:height // 3 + side, x:x + side] = 255
        frames.append(frame)
    return frames


def write_clip(path: Path, width: int, height: int, n: int) -> Path:
    with FrameSink(path, width=width, height=height, fps=30) as sink:
        for frame in synthetic_frames(width, height, n):
            sink.write(frame)
    return path


def measure_end_to_end(net: torch.nn.Module, row: EndToEndRow, clip: Path, device: torch.device,
                       dtype: torch.dtype) -> EndToEndRow:
    """Run ``clip`` through ``interpolate_video`` at factor 2 and fill ``row`` with the stage times."""
    timings = StageTimes()
    out = clip.with_name(f"out_{clip.stem}.mp4")
    try:
        report = interpolate_video(clip, out, net, ScheduleConfig(factor=2, batch_size=row.batch), device=device,
                                   dtype=dtype, keep_audio=False, overwrite=True, timings=timings)
    except Exception as e:  # as for the model alone: the row says what failed
        log.debug("end-to-end run failed", exc_info=True)
        row.status = _failure(e)
        return row
    finally:
        out.unlink(missing_ok=True)
    row.frames_in, row.frames_out = report.frames_in, report.frames_out
    row.fps_out = report.frames_out / timings.wall
    row.stages = asdict(timings)
    row.shares = {k: getattr(timings, k) / timings.wall for k in ("decode", "model", "encode")}
    return row


# --- the whole bench ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[tuple[str, str], ...]  # (architecture, preset)
    sizes: tuple[tuple[int, int], ...]  # (width, height)
    dtypes: tuple[str, ...] = ("fp32",)  # fp32, bf16, fp16
    batches: tuple[int, ...] = (1,)  # pairs per model call
    compile: bool = False  # also time torch.compile'd models
    repeat: int = 5  # timed calls per measurement
    warmup: int = 2  # untimed calls before them
    e2e: bool = True  # also run a generated clip through interpolate_video
    e2e_frames: int = 8  # frames of that clip

    def __post_init__(self) -> None:
        if not (self.models and self.sizes and self.dtypes and self.batches):
            raise ValueError("give at least one model, size, dtype and batch size")
        if unknown := [d for d in self.dtypes if d not in DTYPES]:
            raise ValueError(f"unknown dtype {unknown[0]!r}; use fp32, bf16 or fp16")
        if min(self.batches) < 1 or self.repeat < 1 or self.warmup < 0 or self.e2e_frames < 2:
            raise ValueError("batch sizes and repeat must be at least 1, warmup at least 0, e2e_frames at least 2")

    def steps(self) -> int:
        per_size = len(self.dtypes) * (len(self.batches) * (2 if self.compile else 1) + self.e2e)
        return len(self.models) * len(self.sizes) * per_size


@dataclass
class BenchReport:
    model: list[ModelRow] = field(default_factory=list)
    e2e: list[EndToEndRow] = field(default_factory=list)


def run_bench(config: BenchConfig, device: torch.device,
              on_progress: Callable[[int, int, str], None] | None = None) -> BenchReport:
    """Measure every combination of ``config`` on ``device``; ``on_progress(done, total, what)`` as it goes."""
    for d in config.dtypes:
        resolve_dtype(d, device)  # fp16 on the CPU: a clear error before anything runs
    report, done, total = BenchReport(), 0, config.steps()

    def step(what: str) -> None:
        nonlocal done
        if on_progress:
            on_progress(done, total, what)
        done += 1

    with tempfile.TemporaryDirectory(prefix="framefill-bench-") as tmp:
        clips: dict[tuple[int, int], Path] = {}
        for arch, preset in config.models:
            for d in config.dtypes:
                dtype = DTYPES[d]
                net, weights = load_for_bench(arch, preset, device, dtype)
                for w, h in config.sizes:
                    for batch in config.batches:
                        for compiled in (False, True) if config.compile else (False,):
                            step(f"{preset} {w}x{h} {d} batch {batch}{' compiled' if compiled else ''}")
                            row = ModelRow(arch, preset, weights, f"{w}x{h}", "", d, batch, compiled)
                            report.model.append(measure_model(net, row, device, dtype, repeat=config.repeat,
                                                              warmup=config.warmup))
                    if config.e2e:
                        step(f"{preset} {w}x{h} {d} end to end")
                        if (w, h) not in clips:
                            clips[(w, h)] = write_clip(Path(tmp) / f"clip_{w}x{h}.mp4", w, h, config.e2e_frames)
                        row = EndToEndRow(arch, preset, weights, f"{w}x{h}", d, max(config.batches))
                        report.e2e.append(measure_end_to_end(net, row, clips[(w, h)], device, dtype))
                del net
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if on_progress:
        on_progress(total, total, "done")
    return report


# --- the record: machine, versions, JSON ----------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """What the figures were measured on: the device and the versions of everything that matters."""
    from framefill.ffmpeg import ffmpeg_exe

    dev: dict[str, object] = {"type": device.type, "torch_threads": torch.get_num_threads(),
                              "cpu": _cpu_name(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        dev.update(name=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    try:
        import subprocess

        ffmpeg = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        ffmpeg = "unknown"
    versions = {"framefill": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__, "opencv": cv2.__version__, "ffmpeg": ffmpeg, "platform": platform.platform()}
    return {"device": dev, "versions": versions}


def _plain(value: object) -> object:
    """JSON-ready: paths and tuples as strings and lists, non-finite floats as null (PSNR of identical images)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path | torch.device | torch.dtype):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as strict JSON (``inf`` becomes null) to ``path``, replacing it only once complete."""
    text = json.dumps(_plain(data), indent=1, allow_nan=False)
    tmp = Path(path).with_name(f".{Path(path).name}.partial")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
