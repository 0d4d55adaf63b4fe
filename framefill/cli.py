"""The ``framefill`` command line: a thin Typer layer over the library.

Every expected failure (bad input, a missing file, an existing output, no CUDA...) ends in one
``error: ...`` line on stderr and exit code 2 (bad usage or input) or 1 (a failure while running); Ctrl-C
ends in 130. The policy lives in the app itself (``_App.main``), so the ``framefill`` script,
``python -m framefill`` and ``typer.testing.CliRunner`` all behave alike. Set ``FRAMEFILL_DEBUG=1`` to see
the traceback instead.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperCommand, TyperGroup

from framefill import __version__

err = Console(stderr=True)
out = Console()  # stdout: the tables of eval and bench are those commands' result


class UsageError(Exception):
    """Bad usage or input: exit code 2."""


class _App(TyperGroup):
    """framefill's error policy (see the module docstring) around every command, argument parsing included."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode or os.environ.get("FRAMEFILL_DEBUG"):  # the caller handles exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as e:
            message, code = _describe(e)
            if message:
                _error(message)
            sys.exit(code)
        if code == 130:  # typer turns Ctrl-C into Exit(130), which it returns when not standalone
            _error("interrupted")
        sys.exit(code if isinstance(code, int) else 0)


def _describe(e: Exception) -> tuple[str, int]:
    """The one line to print (empty: already shown) and the exit code for an exception that ended a command."""
    if isinstance(e, typer.TyperException):  # click's usage errors, as typer vendors them: exit code 2
        ctx = getattr(e, "ctx", None)
        message = e.format_message()  # empty for a bare `framefill`, whose help is already printed
        return (f"{message} (see {ctx.command_path} -h)" if message and ctx else message), e.exit_code
    if isinstance(e, UsageError | ValueError | FileNotFoundError):
        return str(e), 2
    from framefill.checkpoint import WeightsError  # only now: a usage error is reported without importing torch
    from framefill.frames import VideoError

    if isinstance(e, VideoError | WeightsError):
        return str(e), 2
    if isinstance(e, typer.Abort):
        return "aborted", 1
    return f"{type(e).__name__}: {e} (set FRAMEFILL_DEBUG=1 for the traceback)", 1


def _error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Command(TyperCommand):
    """A command whose usage line shows an argument's metavar as given (``PATHS...``), not ``{PATHS...}...``."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            is_named_argument = param.param_type_name == "argument" and param.metavar
            pieces += [param.metavar] if is_named_argument else param.get_usage_pieces(ctx)
        return pieces


def _flag(*names: str, **kwargs: Any) -> Any:
    """A boolean option; ``metavar=""`` keeps typer from labelling it ``<bool>`` in the help."""
    return typer.Option(*names, metavar="", **kwargs)


app = typer.Typer(
    name="framefill",
    cls=_App,
    help="Smooth video by frame interpolation: 24/30 fps to 60/120 fps or slow motion, on a CPU or a CUDA GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _parse_fps(text: str, option: str = "--fps") -> Fraction:
    from framefill.ffmpeg import parse_rate

    try:
        return parse_rate(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"{option} {text!r} is not a frame rate; write 60, 59.94 or 60000/1001") from None


_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(text: str, option: str = "--max-memory") -> int:
    """``"2G"``, ``"512M"``, ``"1.5GiB"``, ``"800mb"``, ``"1048576"`` -> bytes (K, M, G, T are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", text.lower())
    if match is None:
        raise UsageError(f"{option} {text!r} is not a memory size; write e.g. 2G, 512M or 1.5GiB")
    value = int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])
    if value < 1:
        raise UsageError(f"{option} {text!r} is not a memory size above zero; write e.g. 2G or 512M")
    return value


# Options that several commands share.
ModelOption = Annotated[str, typer.Option("--model", "-m",
                                          help="Interpolator: film (two frames) or convlstm (four).")]
WeightsOption = Annotated[Path | None, typer.Option("--weights", "-w", help="Weights file (.safetensors) instead of "
                                                    "the shipped ones.")]
DeviceOption = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or cuda:N.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA; bf16 on a CPU with native bf16 "
                                                                  "instructions, else fp32), fp32, fp16, "
                                                                  "bf16.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"framefill {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool | None, _flag("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = None,
) -> None:
    """framefill: frame interpolation for video."""


@app.command(cls=_Command)
def interp(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATHS...", show_default=False,
        help="INPUT OUTPUT (a video or a folder of frames, each way), or A.png B.png MID.png for one in-between "
             "frame of a pair.")],
    factor: Annotated[int | None, typer.Option("--factor", "-f", min=2,
                                               help="Multiply the frame rate by this (2, 3, 4, 8...).")] = None,
    fps: Annotated[str | None, typer.Option("--fps", help="Target frame rate instead of --factor "
                                                          "(60, 59.94, 60000/1001...).")] = None,
    slowmo: Annotated[int | None, typer.Option("--slowmo", "-s", min=2, show_default=False,
                                               help="Slow motion: play N times slower, at the input's frame rate (or "
                                                    "at --factor/--fps), with N times the frames; no audio.")] = None,
    model: ModelOption = "film",
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Frame pairs per model call.")] = 2,
    in_fps: Annotated[str | None, typer.Option("--in-fps", help="Frame rate of an input folder of frames "
                                               "(default 30), or to override a video's.")] = None,
    codec: Annotated[str | None, typer.Option(help="Video encoder (libx264, libx265, libvpx-vp9, ffv1); "
                                                   "default by output extension.")] = None,
    crf: Annotated[int | None, typer.Option(help="Constant quality, lower is better (x264 default 18).")] = None,
    preset: Annotated[str | None, typer.Option(help="Encoder speed preset (x264: ultrafast..veryslow).")] = None,
    pix_fmt: Annotated[str | None, typer.Option("--pix-fmt", help="Output pixel format (default yuv420p; "
                                                "yuv444p for odd sizes).")] = None,
    audio: Annotated[bool, _flag("--audio/--no-audio", help="Carry audio and subtitles over.")] = True,
    scene_detect: Annotated[bool, _flag("--scene-detect/--no-scene-detect",
                                        help="Copy frames, never morph, across scene cuts.")] = True,
    max_depth: Annotated[int, typer.Option("--max-depth", min=1, max=8, help="Recursion depth for times that are "
                                           "not powers of two: they snap to a 1/2**depth grid.")] = 3,
    max_memory: Annotated[str | None, typer.Option("--max-memory", metavar="SIZE", show_default=False,
                                                   help="Most memory one model call may use (2G, 512M; K, M, G, T are "
                                                        "powers of 1024). Bigger frames run in overlapping tiles, "
                                                        "blended without seams. Default: what the device has free.")
                          ] = None,
    tile: Annotated[int | None, typer.Option("--tile", metavar="SIZE", min=1, show_default=False,
                                             help="Always run in overlapping SIZE x SIZE tiles (rounded to the model's "
                                                  "multiple), whatever the memory.")] = None,
    debug: Annotated[Path | None, typer.Option("--debug", metavar="DIR", show_default=False,
                                               help="Also write pictures of how each in-between frame was made into "
                                                    "DIR: the flow both ways (colour wheel), the blend mask and the "
                                                    "fallback weight, named by output frame and time (README: "
                                                    "Seeing why a frame came out wrong).")] = None,
    montage: Annotated[Path | None, typer.Option("--montage", metavar="PATH", show_default=False,
                                                 help="Also write a side-by-side video to PATH: the input left (held "
                                                      "until its next frame), the output right, same frames, rate and "
                                                      "audio. The normal output is written too. For A B MID: an "
                                                      "image, A beside MID.")] = None,
    force: Annotated[bool, _flag("--force", "-y", help="Overwrite an existing output.")] = False,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar.")] = False,
    resume: Annotated[bool | None, _flag("--resume/--no-resume", show_default=False,
                                         help="Keep finished work as segments in OUTPUT.framefill-work, so that an "
                                              "interrupted run goes on where it stopped (the default when that folder "
                                              "exists); --no-resume discards it.")] = None,
    segment_length: Annotated[int | None, typer.Option("--segment-length", metavar="FRAMES", min=1,
                                                       show_default=False,
                                                       help="Output frames per resumable segment (default: 4 s of "
                                                            "output).")] = None,
    segments: Annotated[int | None, typer.Option("--segments", metavar="N", min=1, show_default=False,
                                                 help="Fan-out: cut the job into N time ranges (with --segment, "
                                                      "--work; then framefill join).")] = None,
    segment: Annotated[int | None, typer.Option("--segment", metavar="K", min=1, show_default=False,
                                                help="Fan-out: make range K (1 to N) of --segments N.")] = None,
    work: Annotated[Path | None, typer.Option("--work", metavar="DIR", show_default=False,
                                              help="Fan-out: the folder every segment goes to.")] = None,
) -> None:
    """Interpolate a video, a folder of frames, or one pair of images.

    \b
    framefill interp clip.mp4 smooth.mp4 --factor 4     30 -> 120 fps, audio kept
    framefill interp clip.mp4 smooth.mp4 --fps 60       24 -> 60, 23.976 -> 59.94 (give 60000/1001)
    framefill interp clip.mp4 slow.mp4 --slowmo 4       4x slow motion at the clip's own frame rate
    framefill interp frames/ out_frames/ --factor 2     folders of PNG/JPEG frames
    framefill interp a.png b.png mid.png                one in-between frame of a pair
    framefill interp clip.mp4 out.mp4 --montage side.mp4 --debug dbg/   see how it was made
    framefill interp clip.mp4 --segments 8 --segment 3 --work parts/   one of 8 ranges; then framefill join
    """
    # Checks that need neither torch nor the input's contents first: a typo fails at once.
    fan_out = _check_segment_options(paths, segments, segment, work, resume, segment_length)
    if fan_out:
        paths = [*paths, work]  # type: ignore[list-item]  # for the checks below; the segments go to --work
    if len(paths) not in (2, 3):
        raise UsageError(f"interp takes INPUT OUTPUT or A B MID (got {len(paths)} paths); see framefill interp -h")
    for p in paths[:-1]:
        if not p.exists():
            raise UsageError(f"{p} does not exist; check the path")
    if factor is not None and fps is not None:
        raise UsageError("give --factor or --fps, not both")
    if len(paths) == 3 and (factor is not None or fps is not None or slowmo is not None):
        raise UsageError("A B MID makes the one frame halfway between A and B; --factor, --fps and --slowmo do "
                         "not apply")
    target = _parse_fps(fps) if fps else None
    in_rate = _parse_fps(in_fps, "--in-fps") if in_fps else None
    memory = parse_memory(max_memory) if max_memory is not None else None
    slow = slowmo or 1
    if target is not None:
        target *= slow  # interpolated frames per second of footage; played at --fps
    elif factor is None:
        factor = slow if slowmo else 2  # slow motion alone keeps the input's rate
    else:
        factor *= slow

    from framefill.interpolate import ScheduleConfig
    from framefill.pipeline import (
        interpolate_images,
        interpolate_video,
        load_interpolator,
        resolve_device,
        resolve_dtype,
    )
    from framefill.tiling import TileConfig
    from framefill.video import EncodeOptions

    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    net = load_interpolator(model, weights, dev, dtype)
    tiling = TileConfig(max_memory=memory, tile=tile)
    if len(paths) == 3:
        s = interpolate_images(paths[0], paths[1], paths[2], net, device=dev, dtype=dtype, overwrite=force,
                               tiling=tiling, debug=debug, montage=montage)
        if not quiet:
            note = f" (in {_tiles(s)})" if s.tiled_frames else ""
            extra = f" and {montage}" if montage is not None else ""
            err.print(escape(f"wrote {paths[2]}{extra}{note}"), highlight=False, soft_wrap=True)
        return
    src, dst = paths
    schedule = ScheduleConfig(factor=factor, fps=target, max_depth=max_depth, batch_size=batch_size,
                              detect_scenes=scene_detect, tiling=tiling)
    encode = None
    if codec or crf is not None or preset or pix_fmt:
        base = EncodeOptions.for_path(dst)
        encode = EncodeOptions(codec=codec or base.codec, crf=base.crf if crf is None else crf,
                               preset=preset or base.preset, pix_fmt=pix_fmt or base.pix_fmt)
    # A live bar only on a terminal (in a log it would be one stale line), and transient: on success the
    # summary line replaces it, on failure the error line stands alone.
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"),
                        TimeRemainingColumn(), console=err, transient=True, disable=quiet or not err.is_terminal)
    task = None
    t0 = time.perf_counter()

    def on_start(total: int | None, f_in: Fraction, f_out: Fraction) -> None:
        nonlocal task
        title = f"{escape(src.name)} {float(f_in):.3f} -> {float(f_out):.3f} fps"
        task = progress.add_task(title, total=total, rate="")

    def on_progress(n: int) -> None:
        if task is not None:
            elapsed = time.perf_counter() - t0
            progress.update(task, completed=n, rate=f"{n / elapsed:6.1f} fps" if elapsed > 0 else "")

    segmented = fan_out or resume or (resume is None and _has_work(dst))
    if segmented and (debug is not None or montage is not None):
        raise UsageError("--debug and --montage are for a single run; they do not combine with --resume, "
                         "--segments or a resumable work folder (give --no-resume)")
    if segmented:
        from framefill.resume import JobSpec

        spec = JobSpec(model, Path(weights) if weights else _default_weights(model), dtype, schedule,
                       encode or EncodeOptions.for_path(dst if not fan_out else Path("out.mp4")), in_rate, audio, slow)
        with progress:
            _interp_segments(src, dst, net, spec, dev, fan_out=fan_out, segments=segments, segment=segment,
                             fresh=resume is False, length=segment_length, force=force, quiet=quiet,
                             on_start=on_start, on_progress=on_progress)
        return
    if resume is False:
        _discard_work(dst)
    with progress:
        report = interpolate_video(src, dst, net, schedule, device=dev, dtype=dtype, encode=encode, in_fps=in_rate,
                                   keep_audio=audio, overwrite=force, on_start=on_start, on_progress=on_progress,
                                   slowmo=slow, debug=debug, montage=montage)
    if not quiet:
        s = report.stats
        tiled = f"; {s.tiled_frames} model frames in {_tiles(s)}" if s.tiled_frames else ""
        rate = (f"{report.fps_play} fps, {slow}x slow motion" if report.fps_play is not None else
                f"{report.fps_out} fps")
        also = f" (and the montage {montage})" if montage is not None else ""
        err.print(escape(f"wrote {dst}{also}: {report.frames_in} -> {report.frames_out} frames at {rate} "
                         f"({s.pairs_interpolated} pairs interpolated, {s.pairs_duplicate} duplicates, "
                         f"{s.scene_cuts} scene cuts{tiled}) in {time.perf_counter() - t0:.1f} s"),
                  highlight=False, soft_wrap=True)
        for w in report.warnings:
            err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)


def _check_segment_options(paths: list[Path], segments: int | None, segment: int | None, work: Path | None,
                           resume: bool | None, length: int | None) -> bool:
    """Whether interp makes one segment of a fan-out (``--segments N --segment K --work DIR``); refuses mixtures."""
    given = [name for name, value in (("--segments", segments), ("--segment", segment), ("--work", work))
             if value is not None]
    if not given:
        return False
    if len(given) < 3:
        missing = ", ".join(n for n in ("--segments", "--segment", "--work") if n not in given)
        raise UsageError(f"a fan-out segment needs --segments N, --segment K and --work DIR; add {missing}")
    assert segments is not None and segment is not None and work is not None
    if segment > segments:
        raise UsageError(f"--segment {segment} is not one of the {segments} segments; give 1 to {segments}")
    if len(paths) != 1:
        raise UsageError("with --segments, give the INPUT only: the segment goes to --work DIR (framefill join DIR "
                         "OUTPUT then makes the video)")
    if resume is not None or length is not None:
        raise UsageError("--resume and --segment-length are for one-machine jobs; a fan-out segment is kept in --work "
                         "anyway")
    if work.exists() and not work.is_dir():
        raise UsageError(f"--work {work} is a file; give a folder")
    return True


def _has_work(dst: Path) -> bool:
    from framefill.resume import has_work

    return has_work(dst)


def _discard_work(dst: Path) -> None:
    from framefill.resume import discard_work

    discard_work(dst)


def _default_weights(model: str) -> Path:
    from framefill.models import default_weights

    return default_weights(model)


def _interp_segments(src: Path, dst: Path, net: Any, spec: Any, dev: Any, *, fan_out: bool, segments: int | None,
                     segment: int | None, fresh: bool, length: int | None, force: bool, quiet: bool,
                     on_start: Any, on_progress: Any) -> None:
    """interp through segments: one range of a fan-out into --work, or a resumable job."""
    from framefill.resume import interpolate_resumable, render_part

    t0 = time.perf_counter()
    if fan_out:
        assert segments is not None and segment is not None
        report, seg, made = render_part(src, dst, segments, segment, net, spec, device=dev, on_start=on_start,
                                        on_progress=on_progress)
        what = (f"wrote segment {segment} of {segments} to {dst}: output frames {seg.outputs.start} to "
                f"{seg.outputs.stop - 1}, from input frames {seg.first} to {seg.last}" if made else
                f"segment {segment} of {segments} is already in {dst}; nothing to do")
    else:
        report = interpolate_resumable(src, dst, net, spec, device=dev, overwrite=force, fresh=fresh,
                                       segment_length=length, on_start=on_start, on_progress=on_progress)
        s = report.stats
        what = (f"wrote {dst}: {report.frames_in} -> {report.frames_out} frames at {report.fps_play or report.fps_out} "
                f"fps ({s.pairs_interpolated} pairs interpolated in this run, {s.pairs_duplicate} duplicates, "
                f"{s.scene_cuts} scene cuts)")
    if not quiet:
        err.print(escape(f"{what} in {time.perf_counter() - t0:.1f} s"), highlight=False, soft_wrap=True)
        for w in report.warnings:
            err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)


@app.command(cls=_Command)
def join(
    work: Annotated[Path, typer.Argument(metavar="DIR", show_default=False,
                                         help="The --work folder the segments were made in.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", show_default=False, help="The video to write.")],
    input_: Annotated[Path | None, typer.Option("--input", "-i", show_default=False,
                                                help="The input video, where it is not at the path it had when the "
                                                     "segments were made (for its audio and subtitles).")] = None,
    force: Annotated[bool, _flag("--force", "-y", help="Overwrite an existing output.")] = False,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No summary line.")] = False,
) -> None:
    """Join the segments of a fan-out (framefill interp INPUT --segments N --segment K --work DIR) into one video,
    with the audio and subtitles of the whole input.

    \b
    framefill join parts/ smooth.mp4
    framefill join parts/ smooth.mkv --input /data/clip.mp4
    """
    if not work.is_dir():
        raise UsageError(f"{work} is not a folder of segments; give the --work folder of framefill interp")
    from framefill.resume import join as join_segments
    from framefill.resume import read_manifest

    warnings = join_segments(work, output, source=input_, overwrite=force)
    if not quiet:
        m = read_manifest(work)
        err.print(escape(f"wrote {output}: {m['frames_out']} frames at {m['fps_out']} fps from "
                         f"{len(m['segments'])} segments"), highlight=False, soft_wrap=True)
        for w in warnings:
            err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)


def _tiles(stats: Any) -> str:
    """``"9 tiles"`` (or ``"8.5 tiles on average"``): how many tiles each tiled model frame took."""
    per = stats.tiles / stats.tiled_frames
    return f"{per:.0f} tiles" if per == int(per) else f"{per:.1f} tiles on average"


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option("--data", help="Folder of videos and/or frame folders to learn from "
                                              "(may be left out with --photos).", show_default=False)] = None,
    photos: Annotated[Path | None, typer.Option("--photos", help="Folder of still photos (searched recursively): "
                                                "synthetic triplets with an exact middle frame, from a moving camera "
                                                "and 0-3 moving cut-out sprites.", show_default=False)] = None,
    synthetic: Annotated[float | None, typer.Option("--synthetic", min=0.0, max=1.0, show_default=False,
                                                    help="Chance that a triplet is synthetic (from --photos), drawn "
                                                         "per triplet with the seeded RNG. Default: 0.3 with --photos "
                                                         "and --data, 1 with --photos alone, 0 without --photos.")
                         ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log, config.")] = Path("runs/film"),
    model: Annotated[str, typer.Option("--model", "-m", help="Architecture: film or convlstm.")] = "film",
    preset: Annotated[str | None, typer.Option(help="Model preset (film-s, film-m, film-tiny; convlstm-s, "
                                                    "convlstm-m, convlstm-tiny).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Held-out clips for periodic PSNR.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Total optimiser steps.")] = 5000,
    batch: Annotated[int, typer.Option(min=1, help="Triplets per step (under torchrun: in all, split over the "
                                                 "processes).")] = 8,
    crop: Annotated[int, typer.Option(min=32, help="Training crop size (pixels).")] = 160,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    max_frames: Annotated[int, typer.Option("--max-frames", min=3, help="Frames kept in RAM per clip.")] = 240,
    motion_crops: Annotated[int, typer.Option("--motion-crops", min=1, help="Crop places drawn per sample; the "
                                              "one with the most motion is kept (1: uniform crops).")] = 1,
    arbitrary_time: Annotated[bool, _flag("--arbitrary-time/--no-arbitrary-time", help="film: learn the frame at any "
                                          "time between the inputs (clips: frame i + j of inputs i and i + 2s, "
                                          "t = j / 2s; photos: t uniform in 1/8..7/8), so that interp asks for "
                                          "each output time directly instead of bisecting.")] = False,
    resume: Annotated[bool, _flag("--resume/--no-resume", help="Continue from OUT/last.pt if it exists.")] = True,
    finetune: Annotated[Path | None, typer.Option(help="Start from these weights (.safetensors).")] = None,
    film_weights: Annotated[Path | None, typer.Option("--film-weights", show_default=False,
                                                      help="convlstm: load its film part from these film weights "
                                                           "(weights/film.safetensors); film stays frozen.")] = None,
    gan: Annotated[bool, _flag("--gan/--no-gan", help="Adversarial fine-tuning: a per-frame and a frame-tuple "
                               "(3D-conv) discriminator, non-saturating loss, next to the usual losses. Meant "
                               "with --finetune: it trades some PSNR for sharper detail.")] = False,
    gan_weight: Annotated[float, typer.Option("--gan-weight", min=0.0, help="Weight of the adversarial term "
                                              "(with --gan).")] = 0.01,
    export: Annotated[Path | None, typer.Option(help="Write the final (EMA) weights here as .safetensors.")] = None,
    device: DeviceOption = "auto",
    precision: Annotated[str, typer.Option("--precision", help="Autocast of the forward passes: auto (bf16 on a "
                                           "CUDA GPU that has it, else fp16 there; fp32 on the CPU), fp32, bf16, "
                                           "fp16 (with loss scaling). Weights and losses stay float32.")] = "auto",
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop (with a checkpoint) after "
                                                      "this long; run again to resume.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Folder for decoded-clip caches (default OUT/cache).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train an interpolator on any folder of videos (drop-frame triplets at strides 1-3) and/or of photos.

    Checkpoints go to OUT/last.pt every 250 steps and on Ctrl-C; a second run with the same OUT resumes.
    Several GPUs or nodes: torchrun --nproc_per_node N -m framefill train ... (one process per GPU).
    """
    if data is None and photos is None:
        raise UsageError("nothing to learn from; give --data (videos) and/or --photos (still photos)")
    if film_weights is not None and model != "convlstm":
        raise UsageError(f"--film-weights loads the film part of convlstm; {model} has none (use --finetune)")
    if film_weights is not None and not film_weights.is_file():
        raise UsageError(f"--film-weights {film_weights} does not exist; check the path")
    if arbitrary_time and model != "film":
        raise UsageError(f"--arbitrary-time trains film; {model} reads four frames and is trained at t = 0.5 only")
    for option, path in (("--data", data), ("--photos", photos)):
        if path is not None and not path.exists():
            raise UsageError(f"{option} {path} does not exist; check the path")
    ratio = synthetic if synthetic is not None else 0.0 if photos is None else 0.3 if data else 1.0
    if ratio > 0 and photos is None:
        raise UsageError(f"--synthetic {ratio:g} needs --photos, a folder of photos to render triplets from")
    if ratio < 1 and data is None:
        raise UsageError(f"--synthetic {ratio:g} leaves {1 - ratio:.0%} of the triplets to --data; give --data "
                         "or --synthetic 1")

    from framefill.train import distributed
    from framefill.train.data import DataConfig
    from framefill.train.gan import GanConfig
    from framefill.train.loop import TrainConfig, Trainer, train_precision
    from framefill.train.synth import SynthConfig

    launch = distributed.launch_from_env()  # torchrun's rank and world size; rank 0 of 1 without torchrun
    if batch % launch.world:
        if not launch.main:  # every rank finds this: rank 0 says it, the others wait so that torchrun, which
            time.sleep(2)  # stops all ranks once one has ended, does not stop rank 0 before it has said it
            raise typer.Exit(2)
        raise UsageError(f"--batch {batch} is the global batch and does not split evenly over {launch.world} "
                         f"processes; give a multiple of {launch.world}")
    dev = distributed.device_for(device, launch)
    ctx.with_resource(distributed.process_group(launch, dev))  # left when the command ends, however it ends
    say = err.print if launch.main else lambda *args, **kwargs: None  # rank 0 alone reports
    cfg = TrainConfig(model=model, preset=preset, steps=steps, batch=batch, lr=lr, seed=seed,
                      precision=train_precision(precision, dev), prefetch=dev.type == "cuda",
                      finetune=str(finetune) if finetune else None,
                      film_weights=str(film_weights) if film_weights else None,
                      data=DataConfig(crop=crop, max_frames=max_frames, motion_crops=motion_crops,
                                      arbitrary_time=arbitrary_time),
                      synth=SynthConfig(ratio=ratio),
                      gan=GanConfig(enabled=gan, weight=gan_weight), val_every=500)
    trainer = Trainer(cfg, data, out, val=val, device=dev, cache_dir=cache or out / "cache", photos=photos)
    last = out / "last.pt"
    if distributed.from_main(resume and last.exists(), dev):  # rank 0 decides, every rank loads
        if not last.exists():
            raise UsageError(f"rank {launch.rank} cannot see {last}; put --out on storage every node shares")
        trainer.load(last)
        say(f"resumed from {last} at step {trainer.step}")
    summary = trainer.dataset.summary()
    where = f"{launch.world} processes ({dev.type}), {batch // launch.world} each" if launch.distributed else dev
    samples = "four-frame windows" if trainer.context == 4 else "triplets"
    what = [f"{summary['triplets']} {samples} from {summary['clips']} clips"] if summary.get("clips") else []
    if summary.get("photos"):
        what.append(f"{summary['photos']} photos ({ratio:.0%} of triplets synthetic)")
    amp = "" if cfg.precision == "fp32" else f", {cfg.precision} autocast"
    say(f"training {model} on {' and '.join(what)}, {where}{amp}")
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err, disable=not launch.main) as progress:
        task = progress.add_task("train", total=steps, completed=trainer.step, info="")

        def on_step(step: int, rec: dict) -> None:
            info = f"loss {rec['total']:.4f}"
            if "val_psnr" in rec:
                info += f"  val {rec['val_psnr']:.2f} dB / SSIM {rec['val_ssim']:.4f}"
            progress.update(task, completed=step, info=info)

        trainer.run(max_seconds=max_minutes * 60 if max_minutes else None, on_step=on_step)
    if export and trainer.step >= steps:
        trainer.export(export)  # on rank 0
        say(f"exported {export}")
    say(f"step {trainer.step}/{steps}; checkpoint {last}")
    if launch.distributed:  # leave the process group, then end without the interpreter's shutdown (see exit_now)
        ctx.close()
        distributed.exit_now(0)


@app.command()
def info(
    weights: Annotated[Path | None, typer.Argument(
        metavar="[PATH]", help="A weights file (default: the shipped ones), or a video or frame folder.")] = None,
) -> None:
    """Show what a weights file holds (architecture, config, training, measured quality), or how interp reads a
    video or frame folder (size, rate and its evenness, scan, colour, audio).

    \b
    framefill info                      the shipped weights
    framefill info runs/mine/model.safetensors
    framefill info clip.mp4             what interp will see in clip.mp4
    """
    import json

    from framefill.checkpoint import load_safetensors, read_metadata
    from framefill.models import NOT_SHIPPED, architectures, default_weights

    if weights is not None and weights.suffix.lower() != ".safetensors" and weights.exists():
        _describe_input(weights)
        return
    files = [weights] if weights else [default_weights(a) for a in architectures()]
    for f in files:
        if weights is None and not f.exists() and f.stem in NOT_SHIPPED:
            typer.echo(f"{f.stem}: {NOT_SHIPPED[f.stem]}")
            continue
        if not f.exists():
            raise UsageError(f"{f} does not exist; name a weights file, a video or a frame folder: framefill info PATH")
        meta = read_metadata(f)
        tensors, _ = load_safetensors(f)
        typer.echo(f"{f}")
        typer.echo(f"  parameters: {sum(t.numel() for t in tensors.values()):,} ({f.stat().st_size / 1e6:.1f} MB)")
        for k, v in meta.items():
            try:
                v = json.dumps(json.loads(v))
            except ValueError:
                pass
            typer.echo(f"  {k}: {v}")


def _describe_input(path: Path) -> None:
    """``framefill info VIDEO``: what interp reads from a video file or frame folder."""
    from framefill.pipeline import uneven_timing
    from framefill.video import FrameSource

    with FrameSource(path) as source:
        i = source.info
    shown = f", shown as {round(i.width * i.sar)}x{i.height}" if i.sar != 1 else ""
    lines = [f"{path}", f"  picture: {i.width}x{i.height}{shown} ({i.codec})"]
    length = f", {i.duration:.2f} s" if i.duration is not None else ""
    count = f"{i.n_frames} at " if i.n_frames is not None else ""
    lines.append(f"  frames: {count}{i.fps} fps ({float(i.fps):.3f}){length}")
    if i.drift is not None:
        if uneven_timing(i):
            lines.append(f"  timing: variable frame rate: frames stray up to {i.drift:.2f} s from an even "
                         f"{float(i.fps):.3f} fps; interp places its outputs by their timestamps")
        else:
            lines.append("  timing: constant frame rate")
    if i.codec != "images":
        lines.append(f"  scan: {'interlaced (deinterlaced as it is read)' if i.interlaced else 'progressive'}; "
                     f"{i.bits} bits" + (" (kept with --codec libx265, .webm, or a 10-bit --pix-fmt)" if i.bits > 8
                                         else ""))
        read = f"; no matrix named, read as {i.matrix.upper().replace('BT', 'BT.')}" if i.matrix else ""
        lines.append(f"  colour: matrix {i.colour.matrix}, primaries {i.colour.primaries}, transfer "
                     f"{i.colour.transfer} (as the output is tagged){read}")
        lines.append(f"  audio: {'yes' if i.has_audio else 'no'}; subtitles: {'yes' if i.has_subtitles else 'no'}")
    for line in lines:
        typer.echo(line)
    for note in source.warnings:
        typer.echo(f"  note: {note}")


ALL_BASELINES = "repeat,blend,dis,minterpolate"  # framefill.evaluate.BASELINES, without importing torch


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str, option: str) -> tuple[int, ...]:
    """A comma list of positive whole numbers (``1,2``), or a UsageError naming ``option``."""
    try:
        values = tuple(int(part) for part in _csv(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"{option} {text!r} is not a list of positive whole numbers; write e.g. 1 or 1,2")
    return values


def _check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before a long run, an output file that could not be written at its end."""
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        what = "is a folder" if path.is_dir() else f"is in a folder that does not exist ({path.parent})"
        raise UsageError(f"{option} {path} {what}; give a file in an existing folder")


def _bar(label: str, quiet: bool) -> Progress:
    """A transient progress bar on stderr, only on a terminal (as interp's)."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                    TimeElapsedColumn(), console=err, transient=True, disable=quiet or not err.is_terminal)


def _show(table: Any) -> None:
    """Print a table on stdout; in a pipe or a file (80 columns by default) as wide as it needs, never squeezed."""
    if out.is_terminal:
        out.print(table)
    else:
        Console(width=Console(width=1000).measure(table).maximum).print(table)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command(name="eval", cls=_Command)
def eval_(
    data: Annotated[Path, typer.Option("--data", show_default=False,
                                       help="A video; a folder of videos and/or frame folders; or a Middlebury "
                                            "(frame10, frame11, truth frame10i11) or Vimeo-90K (im1, im3, truth im2) "
                                            "layout. Folders are searched recursively.")],
    stride: Annotated[str, typer.Option("--stride", "-s", help="Drop-frame strides S, a comma list: inputs i and "
                                        "i+2S, truth i+S.")] = "1,2",
    max_triplets: Annotated[int, typer.Option("--max-triplets", "-n", min=1, help="Triplets per clip and stride, "
                                              "spread evenly through the clip.")] = 10,
    model: ModelOption = "film",
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    baselines: Annotated[str, typer.Option("--baselines", show_default=False,
                                           help="Baselines to compare with, a comma list, or none (default: all of "
                                                "repeat, blend, dis, minterpolate).")] = ALL_BASELINES,
    save: Annotated[Path | None, typer.Option("--save", help="Folder for one picture per triplet: the inputs, "
                                              "framefill's frame, the truth and the error (x4), side by side.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure here (per triplet, per clip, "
                                                  "per stride, overall; config, device, versions).")] = None,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score framefill and simple baselines on frames left out of real footage (the drop-frame protocol).

    Triplets (i, i+S, i+2S) are taken evenly through each clip: a method sees frames i and i+2S.
    It is scored on frame i+S: PSNR, SSIM (8-bit RGB) and IE (Middlebury's RMS interpolation error).
    Middlebury and Vimeo-90K triplets are scored as they come; static triplets are left out.
    Baselines: repeat (the first frame), blend (the mean), dis (OpenCV DIS flow), minterpolate (ffmpeg).

    \b
    framefill eval --data clips/                       every video and frame folder in clips/, strides 1 and 2
    framefill eval --data clip.mp4 --stride 1 --json scores.json --save pictures/
    framefill eval --data vimeo_triplet/sequences --baselines blend,dis
    """
    if not data.exists():
        raise UsageError(f"--data {data} does not exist; check the path")
    strides = _counts(stride, "--stride")
    chosen = [] if baselines.strip().lower() == "none" else _csv(baselines)
    _check_output_file(json_out, "--json")
    if save is not None and save.exists() and not save.is_dir():
        raise UsageError(f"--save {save} is a file; give a folder for the pictures")

    from framefill.bench import environment, write_json
    from framefill.checkpoint import read_metadata
    from framefill.evaluate import PROTOCOL, EvalConfig, evaluate
    from framefill.models import default_weights
    from framefill.pipeline import load_interpolator, resolve_device, resolve_dtype

    config = EvalConfig(strides=strides, max_triplets=max_triplets, baselines=tuple(chosen), save=save)
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    net = load_interpolator(model, weights, dev, dtype)
    with _bar("eval", quiet) as progress:
        task = progress.add_task("", total=None)
        report = evaluate(data, net, config, device=dev, dtype=dtype,
                          on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    for w in report.warnings:
        err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)
    result = report.to_dict()
    for group, figures in result["groups"].items():
        _eval_table(group, figures["methods"])
    if json_out:
        path = Path(weights) if weights else default_weights(model)
        run = {"data": str(data.resolve()), "strides": list(strides), "max_triplets": max_triplets, "model": model,
               "weights": str(path.resolve()), "precision": str(dtype).removeprefix("torch."), "baselines": chosen,
               "save": str(save.resolve()) if save else None, "protocol": PROTOCOL}
        write_json(json_out, {"config": run, **environment(dev), "weights_metadata": read_metadata(path), **result})
        if not quiet:
            err.print(f"wrote {escape(str(json_out))}", highlight=False, soft_wrap=True)


def _eval_table(group: str, methods: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    stride = int(group.split()[-1]) if group.startswith("stride ") else 0
    title = f"{group}: inputs i and i+{2 * stride}, truth i+{stride}" if stride else "given triplets"
    table = Table(title=title, title_justify="left")
    for name in ("method", "PSNR dB", "SSIM", "IE", "s/frame", "n"):
        table.add_column(name, justify="left" if name == "method" else "right")
    best = {k: (max if k != "ie" else min)(m[k] for m in methods.values()) for k in ("psnr", "ssim", "ie")}
    for name, m in methods.items():
        cells = [f"[bold]{v}[/]" if m[k] == best[k] else v
                 for k, v in (("psnr", f"{m['psnr']:.2f}"), ("ssim", f"{m['ssim']:.4f}"), ("ie", f"{m['ie']:.2f}"))]
        table.add_row(name, *cells, f"{m['sec_median']:.3f}", str(m["n"]))
    _show(table)


@app.command(cls=_Command)
def bench(
    device: DeviceOption = "auto",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Architecture to measure (default: every "
                                              "one).", show_default=False)] = None,
    preset: Annotated[list[str] | None, typer.Option("--preset", metavar="PRESET", show_default=False,
                                                     help="Preset(s), repeatable or a comma list (default: "
                                                          "all).")] = None,
    size: Annotated[list[str] | None, typer.Option("--size", metavar="WxH", show_default=False,
                                                   help="Frame size(s), repeatable or a comma list (default: 960x540,"
                                                        "1280x720,1920x1080, and 3840x2160 on CUDA).")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", show_default=False,
                                              help="Precisions, a comma list of fp32, bf16, fp16 (fp16 needs CUDA; "
                                                   "default: all three on CUDA; fp32 on the CPU, and bf16 where it has "
                                                   "native bf16 instructions).")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Frame pairs per model call, a comma list.")] = "1",
    compile_: Annotated[bool, _flag("--compile/--no-compile", help="Also time torch.compile'd models (reported "
                                    "as unavailable where compiling fails).")] = False,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed calls per measurement (the median "
                                        "is shown).")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls before them.")] = 2,
    e2e: Annotated[bool, _flag("--e2e/--no-e2e", help="Also time the whole interp path on a generated clip: "
                               "decode, model, encode.")] = True,
    e2e_frames: Annotated[int, typer.Option("--e2e-frames", min=2, help="Frames of that clip.")] = 8,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure here (all timings, memory, "
                                                  "config, device, versions).")] = None,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure speed and memory: each model alone (latency, frames/s, peak memory), and end to end.

    Presets without matching shipped weights run with random ones (speed does not depend on the weights).
    End to end: a generated clip through interp's own path (--factor 2), with the busy share of each stage.

    \b
    framefill bench                                     every preset and size on this machine's device
    framefill bench --preset film-s --size 1280x720 --repeat 10
    framefill bench --device cuda --dtype fp16,bf16 --batch 1,4 --compile --json bench.json
    """
    from framefill.bench import parse_size

    sizes = [parse_size(s) for text in size or [] for s in _csv(text) or [text]]
    batches = _counts(batch, "--batch")
    presets = [p for text in preset or [] for p in _csv(text)] or None
    _check_output_file(json_out, "--json")

    from framefill.bench import (
        BenchConfig,
        default_dtypes,
        default_sizes,
        environment,
        model_presets,
        run_bench,
        write_json,
    )
    from framefill.pipeline import resolve_device

    dev = resolve_device(device)
    config = BenchConfig(models=tuple(model_presets(model, presets)), sizes=tuple(sizes or default_sizes(dev)),
                         dtypes=tuple(_csv(dtype) if dtype else default_dtypes(dev)), batches=batches,
                         compile=compile_, repeat=repeat, warmup=warmup, e2e=e2e, e2e_frames=e2e_frames)
    with _bar("bench", quiet) as progress:
        task = progress.add_task("", total=config.steps())
        report = run_bench(config, dev, lambda done, total, what: progress.update(task, completed=done,
                                                                                  description=escape(what)))
    env = environment(dev)
    _bench_tables(report, env)
    if json_out:
        write_json(json_out, {"config": vars(config), **env, "model": [vars(r) for r in report.model],
                              "e2e": [vars(r) for r in report.e2e]})
        if not quiet:
            err.print(f"wrote {escape(str(json_out))}", highlight=False, soft_wrap=True)


def _bench_tables(report: Any, env: dict) -> None:
    from rich.table import Table

    d = env["device"]
    where = d.get("name") or f"{d['cpu']}, {d['torch_threads']} threads"
    table = Table(title=f"model alone on {d['type']} ({where}): median of the timed calls", title_justify="left")
    numbers = ("batch", "ms/call", "frames/s", "peak MB", "+MB", "B/px", "est B/px")
    for name in ("preset", "weights", "size", "dtype", "batch", "compile", "ms/call", "frames/s", "peak MB",
                 "+MB", "B/px", "est B/px", "status"):
        table.add_column(name, justify="right" if name in numbers else "left")
    for r in report.model:
        status = r.status if r.compile_seconds is None else f"{r.status} (compiled in {r.compile_seconds:.0f} s)"
        table.add_row(r.preset, r.weights, r.size, r.dtype, str(r.batch), "yes" if r.compiled else "no",
                      _num(r.ms_median, 1), _num(r.fps, 2), _num(r.peak_mb, 0), _num(r.rise_mb, 0),
                      _num(r.rise_bytes_per_px, 0), _num(r.est_bytes_per_px, 0), status)
    _show(table)
    kinds = sorted({r.memory_kind for r in report.model if r.memory_kind})
    out.print(f"memory: {'; '.join(kinds)}. +MB: the rise during the timed calls; B/px: that per pixel of one pair "
              "(reads low on the CPU, where the allocator reuses what the warm-up took); est B/px: what --max-memory "
              "plans with.", highlight=False, soft_wrap=True)
    if not report.e2e:
        return
    table = Table(title="end to end: generated clip, --factor 2, decode -> model -> encode", title_justify="left")
    for name in ("preset", "size", "dtype", "batch", "frames", "wall s", "out frames/s", "decode", "model",
                 "encode", "status"):
        table.add_column(name, justify="left" if name in ("preset", "size", "dtype", "status") else "right")
    for r in report.e2e:
        wall = r.stages.get("wall")
        shares = [f"{r.shares[k]:.0%}" if r.shares else "-" for k in ("decode", "model", "encode")]
        table.add_row(r.preset, r.size, r.dtype, str(r.batch), f"{r.frames_in} -> {r.frames_out}", _num(wall, 2),
                      _num(r.fps_out, 2), *shares, r.status)
    _show(table)
    out.print("decode / model / encode: busy time of each thread over the wall time; they overlap, the largest is "
              "the bottleneck. The encoder's flush after the last frame is in the wall time only.", highlight=False,
              soft_wrap=True)


def main() -> None:
    """Entry point of ``framefill`` and ``python -m framefill``: logging as FRAMEFILL_LOG says, then the app."""
    logging.basicConfig(level=os.environ.get("FRAMEFILL_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    # kill and `docker stop` send SIGTERM, which ends Python without unwinding and so leaves a hidden partial
    # output behind; turned into a KeyboardInterrupt it cleans up like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    app()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
