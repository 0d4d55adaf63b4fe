"""End-to-end jobs: input (video, frame folder or image pair) -> scheduler -> output, with overlap.

Decoding runs on a background thread (``prefetch``), encoding on another (``ThreadedSink``), so the
model is not starved while ffmpeg works. Library code: progress goes through callbacks.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framefill.allocator import keep_freed_memory
from framefill.checkpoint import WeightsError
from framefill.debug import DebugWriter
from framefill.ffmpeg_args import DEEP_CODECS, OUTPUT_EXTS
from framefill.frames import VideoError, is_image_file, read_image, transparency_note, write_image
from framefill.interpolate import interpolate_frames, interpolate_pair
from framefill.models import NOT_SHIPPED, default_weights, load_model
from framefill.montage import HeldInputs, side_by_side
from framefill.schedule import InterpolationStats, ScheduleConfig, Timeline, is_windowed, out_fps_for
from framefill.tiling import TileConfig
from framefill.video import EncodeOptions, FrameSink, FrameSource, ThreadedSink, VideoInfo, prefetch

log = logging.getLogger(__name__)
_clock = time.perf_counter


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a clear error otherwise."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA device is available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"there is no {spec} (this machine has {torch.cuda.device_count()} CUDA devices)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return dev


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # --precision names


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX, read from ``/proc/cpuinfo``) that
    oneDNN uses for convolutions. Elsewhere bf16 convolutions are emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return torch.backends.mkldnn.is_available() and ("avx512_bf16" in flags or "amx_bf16" in flags)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The precision of the models' convolutions (their geometry stays float32, see ``models.layers.conv_input``).

    ``auto`` is fp16 on CUDA; on the CPU bf16 where it has native bf16 instructions (``cpu_has_native_bf16``),
    else fp32 (the README's speed section has what bf16 costs in quality and saves in time).
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on the CPU; use fp32 or bf16")
    return PRECISIONS[precision]


def load_interpolator(model: str, weights: Path | None, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The shipped (or given) weights for ``model``, on ``device`` in ``dtype``, ready for inference."""
    path = Path(weights) if weights else default_weights(model)
    if not path.exists():
        if weights is None and model in NOT_SHIPPED:
            raise WeightsError(NOT_SHIPPED[model])
        hint = "pass --weights PATH" if weights is None else "check the path"
        raise WeightsError(f"weights not found: {path} ({hint})")
    net, _ = load_model(path, expect=model)
    return prepare_interpolator(net, device, dtype)


def prepare_interpolator(net: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``net`` (a loaded model, moved in place) on ``device`` in ``dtype``, laid out for inference there."""
    net = net.to(device=device, dtype=dtype).eval()
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)  # measured faster for the convolutions on CPU
        keep_freed_memory()
    return net


@dataclass
class JobReport:
    frames_in: int
    frames_out: int
    fps_in: Fraction
    fps_out: Fraction  # the interpolated rate: output frames per second of the input's time
    stats: InterpolationStats
    warnings: list[str]
    fps_play: Fraction | None = None  # the rate the output plays at, when slower than fps_out (slow motion)
    adaptation: Any = None  # interpolate_video(adapt=...): its framefill.adapt.AdaptReport



@dataclass
class Job:
    """How a video job runs, decided from the input before any frame is made (``plan_job``)."""

    info: VideoInfo
    fps_out: Fraction  # interpolated frames per second of the input's time
    fps_play: Fraction  # the rate the output plays at (fps_out / slowmo)
    timeline: Timeline  # where the outputs sit among the input frames (the frames' own times at a variable rate)
    total: int | None  # output frames (None when the input's frames could not be counted)
    deep: bool  # 16-bit frames, 10-bit output
    audio: bool  # the input's audio and subtitles are carried into the output
    notes: list[str]  # warnings for the user


def plan_job(src: Path, info: VideoInfo, net: torch.nn.Module, schedule: ScheduleConfig, encode: EncodeOptions,
             *, like: Path, slowmo: int = 1, keep_audio: bool = True) -> Job:
    """The job ``interpolate_video`` (and a resumable or fanned-out run of it) makes of ``src``; ``like`` is the
    output's path (its kind decides the bit depth), ``encode`` its encoding."""
    fps_out = out_fps_for(info.fps, schedule)
    # A variable frame rate is followed through the frames' own timestamps (two-frame models; a constant-rate
    # video keeps the exact constant-rate plan, which its rounded timestamps would only blur).
    times = info.frame_times if uneven_timing(info) and not is_windowed(net) else None
    timeline = Timeline(fps_out / info.fps, times, fps_out)
    notes = timing_warnings(src, info, net)
    carries = keep_audio and src.is_file() and (info.has_audio or info.has_subtitles)
    if carries and slowmo > 1:
        notes.append(f"audio and subtitles left out: the {slowmo}x slow-motion video lasts {slowmo} times as long")
    return Job(info, fps_out, fps_out / slowmo, timeline, timeline.count(info.n_frames) if info.n_frames else None,
               keeps_depth(src, like, info, net, encode), carries and slowmo == 1, notes)

@dataclass
class StageTimes:
    """Where the time of one ``interpolate_video`` job went, in seconds (filled in when passed as ``timings``).

    Decoding, the model and encoding run on three threads at once, so their busy times overlap: they may add up to
    more than ``wall``, and the largest share of ``wall`` is the bottleneck.
    """

    wall: float = 0.0  # the whole job: probing, opening the output, every frame, finishing the file
    decode: float = 0.0  # decoding thread: producing frames (ffmpeg's decoding and the pipe, or reading images)
    model: float = 0.0  # main thread: scheduler and model (tensor conversion included), waits excluded
    encode: float = 0.0  # encoding thread: handing frames to ffmpeg (waiting for the encoder included)
    wait_decode: float = 0.0  # main thread waiting for decoded frames
    wait_encode: float = 0.0  # main thread waiting for room in the encoding queue
    finish: float = 0.0  # after the last frame: encoding what is queued, ffmpeg's flush, moving the file in place


def _timed(items: Iterator, timings: StageTimes, field: str) -> Iterator:
    """``items``, adding the time spent producing each item to ``timings.<field>``; closing it closes ``items``."""
    try:
        while True:
            start = _clock()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                setattr(timings, field, getattr(timings, field) + _clock() - start)
            yield item
    finally:
        if close := getattr(items, "close", None):
            close()


class _TimedSink:
    """A FrameSink whose ``write`` adds its time to ``timings.encode``; everything else goes to the sink."""

    def __init__(self, sink: FrameSink, timings: StageTimes) -> None:
        self._sink, self._timings = sink, timings

    def write(self, frame: np.ndarray) -> None:
        start = _clock()
        try:
            self._sink.write(frame)
        finally:
            self._timings.encode += _clock() - start

    def __getattr__(self, name: str) -> object:
        return getattr(self._sink, name)


def interpolate_images(a: Path, b: Path, out: Path, net: torch.nn.Module, *, t: float = 0.5, device: torch.device,
                       dtype: torch.dtype, overwrite: bool = False, tiling: TileConfig | None = None,
                       debug: Path | None = None, montage: Path | None = None) -> InterpolationStats:
    """One in-between frame of an image pair, written atomically to ``out``; the model's statistics.

    ``debug``: a folder for the pictures of every frame the model made (``framefill.debug``). ``montage``: an image
    of ``a`` beside the in-between (``framefill.montage``), written atomically too.
    """
    _check_extra_outputs([a, b], out, debug, montage)
    for p in (a, b):  # before the existence test: --force must not make an input the output
        if Path(out).resolve() == Path(p).resolve():
            raise VideoError(f"the output {out} is an input; choose another output path")
    for path in (out, montage):
        if path is not None and Path(path).exists() and not overwrite:
            raise VideoError(f"{path} exists; use --force to overwrite")
    if montage is not None and not is_image_file(Path(montage)):
        raise VideoError(f"the montage of a pair is an image; give --montage a .png or .jpg name, not {montage}")
    img0, img1 = read_image(Path(a)), read_image(Path(b))
    if note := transparency_note(Path(a)) or transparency_note(Path(b)):
        log.warning("%s", note)
    if img0.shape != img1.shape:
        raise VideoError(f"{a} is {img0.shape[1]}x{img0.shape[0]} but {b} is {img1.shape[1]}x{img1.shape[0]}; "
                         "give two images of one size")
    stats = InterpolationStats()
    if debug is not None and is_windowed(net):
        log.warning("%s", _NO_MAPS.format(debug))
        debug = None
    with DebugWriter(debug, overwrite=overwrite) if debug is not None else nullcontext() as pictures:
        mid = interpolate_pair(img0, img1, net, t, device=device, dtype=dtype, tiling=tiling, stats=stats,
                               on_debug=pictures)
        write_image(Path(out), mid)
        if montage is not None:
            write_image(Path(montage), side_by_side(img0, mid))
    return stats


_NO_MAPS = ("--debug: pictures are not made for four-frame models (convlstm) yet; nothing is written to {}")


def _check_extra_outputs(inputs: list[Path], out: Path, debug: Path | None, montage: Path | None) -> None:
    """Refuse a ``debug`` folder or ``montage`` that is an input, the output or each other."""
    named = [("the output", Path(out))] + [("an input", Path(p)) for p in inputs]
    for option, path in (("--montage", montage), ("--debug", debug)):
        if path is None:
            continue
        for what, other in named:
            if Path(path).resolve() == other.resolve():
                raise VideoError(f"{option} {path} is {what}; choose another path")
        named.append((f"the {option} path", Path(path)))


def interpolate_video(src: Path, dst: Path, net: torch.nn.Module, schedule: ScheduleConfig, *, device: torch.device,
                      dtype: torch.dtype, encode: EncodeOptions | None = None, in_fps: Fraction | None = None,
                      keep_audio: bool = True, overwrite: bool = False,
                      on_start: Callable[[int | None, Fraction, Fraction], None] | None = None,
                      on_progress: Callable[[int], None] | None = None,
                      timings: StageTimes | None = None, slowmo: int = 1, debug: Path | None = None,
                      montage: Path | None = None) -> JobReport:
    """Interpolate a video file or frame folder into a video file or frame folder.

    ``slowmo`` > 1 makes slow motion: the output plays at ``1 / slowmo`` of the interpolated rate (``schedule`` gives
    that rate: ask for ``slowmo`` times the frames), so it lasts ``slowmo`` times longer; audio and subtitles,
    which would not fit, are left out with a warning.

    ``on_start(total_out_frames or None, fps_in, fps_out)`` is called once the input is probed and the output
    accepted; ``on_progress(frames_out)`` as frames are written. Nothing appears at ``dst`` unless the whole job
    succeeds: on any failure or a Ctrl-C the partial output is deleted and ffmpeg stopped. ``timings``, if given,
    is filled in with the busy time of each stage (for ``framefill bench``); the job itself is the same.

    ``debug``: a folder for the pictures of every frame the model made (``framefill.debug``; two-frame models only,
    a warning otherwise). ``montage``: a second output, each output frame beside the input held at its time
    (``framefill.montage``), at the output's rate and encoding, with its audio. Both are written atomically, like
    ``dst``, and only when the whole job succeeds.
    """
    started = _clock()
    if slowmo < 1:
        raise ValueError(f"slowmo must be a whole number >= 1, got {slowmo}")
    src, dst = Path(src), Path(dst)
    if is_image_file(src):
        raise VideoError(f"{src} is a single image; give a video, a folder of frames, or two images and an output")
    _check_extra_outputs([src], dst, debug, montage)
    source = FrameSource(src, fps=in_fps)
    info = source.info
    if info.n_frames is not None and info.n_frames < 2:
        source.close()
        raise VideoError(f"{src} has {info.n_frames} frame(s); interpolation needs at least 2")
    job = plan_job(src, info, net, schedule, encode or EncodeOptions.for_path(dst), like=dst, slowmo=slowmo,
                   keep_audio=keep_audio)
    fps_out, fps_play, timeline, total, deep, notes = (job.fps_out, job.fps_play, job.timeline, job.total, job.deep,
                                                      job.notes)
    times = timeline.times
    audio = src if job.audio else None
    source.deep = deep
    stats = InterpolationStats()
    if debug is not None and is_windowed(net):
        notes.append(_NO_MAPS.format(debug))
        debug = None
    sink = FrameSink(dst, width=info.width, height=info.height, fps=fps_play, options=encode,
                     audio_from=audio, overwrite=overwrite, source=src, sar=info.sar,
                     colour=info.colour, deep=deep)
    side, pictures = None, None
    try:
        if montage is not None:
            side = FrameSink(montage, width=2 * info.width, height=info.height, fps=fps_play, options=encode,
                             audio_from=audio, overwrite=overwrite, source=src, sar=info.sar, colour=info.colour,
                             deep=deep)
        if debug is not None:
            pictures = DebugWriter(debug, overwrite=overwrite)
    except BaseException:
        for opened in (sink, side):
            if opened is not None:
                opened.abort()
        source.close()
        raise
    held = HeldInputs(timeline) if side is not None else None
    written = 0
    encoder = sink if timings is None else _TimedSink(sink, timings)
    try:
        with (source, pictures or nullcontext(),
              ThreadedSink(encoder) as out,  # type: ignore[arg-type]  # _TimedSink stands in for the sink
              ThreadedSink(side) if side is not None else nullcontext() as side_out):
            if on_start:
                on_start(total, info.fps, fps_out)
            frames = prefetch(iter(source) if timings is None else _timed(iter(source), timings, "decode"), depth=8)
            try:
                feed = frames if timings is None else _timed(frames, timings, "wait_decode")
                made = interpolate_frames(feed if held is None else held.watch(feed), info.fps, net, schedule,
                                          device=device, dtype=dtype, stats=stats, times=times, on_debug=pictures)
                for frame in made if timings is None else _timed(made, timings, "model"):
                    start = _clock()
                    out.write(frame)
                    if side_out is not None:
                        side_out.write(held.montage(written, frame))  # type: ignore[union-attr]
                    if timings is not None:
                        timings.wait_encode += _clock() - start
                    written += 1
                    if on_progress:
                        on_progress(written)
            finally:
                frames.close()
            finishing = _clock()  # leaving the block encodes what is queued and closes the file
            if written < 2:
                raise VideoError(f"{src} has fewer than 2 decodable frames; interpolation needs at least 2")
    except ValueError as e:  # from the scheduler: too few frames, a frame of another size
        raise VideoError(f"{src}: {e}") from None
    if timings is not None:
        timings.model -= timings.wait_decode  # "model" timed the scheduler's generator, which waits on decoding
        timings.finish = _clock() - finishing
        timings.wall = _clock() - started
    return JobReport(stats.frames_in, written, info.fps, fps_out, stats,
                     notes + list(source.warnings) + list(sink.warnings), fps_play if slowmo > 1 else None)


def keeps_depth(src: Path, dst: Path, info: VideoInfo, net: torch.nn.Module, opts: EncodeOptions) -> bool:
    """Whether a video of more than 8 bits (10-bit HDR from phones, pro cameras) goes through as uint16 frames and
    comes out 10-bit instead of banding through 8 bits: for HEVC and VP9 by default (their 10-bit profiles play on
    most devices, where H.264's High 10 mostly does not), for H.264 when ``--pix-fmt`` asks for a 10-bit format.
    Two-frame models and video files only."""
    if info.bits <= 8 or not src.is_file() or dst.suffix.lower() not in OUTPUT_EXTS or is_windowed(net):
        return False
    if opts.pix_fmt == EncodeOptions.pix_fmt:
        return opts.codec in ("libx265", "libvpx-vp9")
    return opts.codec in DEEP_CODECS and re.search(r"(10|12|16)(le|be)$", opts.pix_fmt) is not None


DRIFT_WARNING = 0.05  # seconds: frames further from their own time than this make motion and audio sync visibly off


def uneven_timing(info: VideoInfo) -> bool:
    """Whether the input's frame times stray from its constant rate enough to matter (variable frame rate)."""
    return info.drift is not None and info.drift > DRIFT_WARNING


def timing_warnings(src: Path, info: VideoInfo, net: torch.nn.Module) -> list[str]:
    """A warning when the input has a variable frame rate that the model's scheduler cannot follow."""
    if not uneven_timing(info) or not is_windowed(net):
        return []
    return [f"{src.name} has a variable frame rate; four-frame models treat it as a constant {float(info.fps):.4g} "
            f"fps, which moves some frames up to {info.drift:.2f} s from their own time (uneven motion, audio out of "
            "sync there). Use --model film, or make it constant first (ffmpeg repeats frames up to the file's "
            f"nominal rate): ffmpeg -i {src.name} -fps_mode cfr constant.mp4"]
