"""Speed and memory of the interpolation models: the model alone, and end to end as ``framefill interp`` runs it.

``run_bench`` measures every model preset, size, precision and batch size of a ``BenchConfig``: the model alone
(``bench_model.measure_model``: latency, frames per second, peak memory, torch.compile), and a generated clip end
to end (``bench_e2e.measure_end_to_end``: decode, model and encode). Here too: the presets and their weights
(shipped where they match, else random: speed does not depend on the weights), and the record of the machine and
versions that goes into ``--json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill import __version__
from framefill.allocator import keep_freed_memory
from framefill.bench_e2e import EndToEndRow, measure_end_to_end, write_clip
from framefill.bench_model import ModelRow, measure_model
from framefill.checkpoint import WeightsError, read_metadata
from framefill.models import REGISTRY, build_model, default_weights, load_model
from framefill.pipeline import PRECISIONS, cpu_has_native_bf16, resolve_dtype

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
