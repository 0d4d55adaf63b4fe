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
    model: Annotated[str, typer.Option("--model", "-m", help="Interpolator: film.")] = "film",
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Weights file (.safetensors) "
                                                 "instead of the shipped ones.")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, "
                                                                "bf16.")] = "auto",
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
    force: Annotated[bool, _flag("--force", "-y", help="Overwrite an existing output.")] = False,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Interpolate a video, a folder of frames, or one pair of images.

    \b
    framefill interp clip.mp4 smooth.mp4 --factor 4     30 -> 120 fps, audio kept
    framefill interp clip.mp4 smooth.mp4 --fps 60       24 -> 60, 23.976 -> 59.94 (give 60000/1001)
    framefill interp frames/ out_frames/ --factor 2     folders of PNG/JPEG frames
    framefill interp a.png b.png mid.png                one in-between frame of a pair
    """
    # Checks that need neither torch nor the input's contents first: a typo fails at once.
    if len(paths) not in (2, 3):
        raise UsageError(f"interp takes INPUT OUTPUT or A B MID (got {len(paths)} paths); see framefill interp -h")
    for p in paths[:-1]:
        if not p.exists():
            raise UsageError(f"{p} does not exist; check the path")
    if factor is not None and fps is not None:
        raise UsageError("give --factor or --fps, not both")
    if len(paths) == 3 and (factor is not None or fps is not None):
        raise UsageError("A B MID makes the one frame halfway between A and B; --factor and --fps do not apply")
    target = _parse_fps(fps) if fps else None
    in_rate = _parse_fps(in_fps, "--in-fps") if in_fps else None
    if factor is None and target is None:
        factor = 2

    from framefill.interpolate import ScheduleConfig
    from framefill.pipeline import (
        interpolate_images,
        interpolate_video,
        load_interpolator,
        resolve_device,
        resolve_dtype,
    )
    from framefill.video import EncodeOptions

    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    net = load_interpolator(model, weights, dev, dtype)
    if len(paths) == 3:
        interpolate_images(paths[0], paths[1], paths[2], net, device=dev, dtype=dtype, overwrite=force)
        if not quiet:
            err.print(f"wrote {escape(str(paths[2]))}", highlight=False, soft_wrap=True)
        return
    src, dst = paths
    schedule = ScheduleConfig(factor=factor, fps=target, max_depth=max_depth, batch_size=batch_size,
                              detect_scenes=scene_detect)
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

    with progress:
        report = interpolate_video(src, dst, net, schedule, device=dev, dtype=dtype, encode=encode, in_fps=in_rate,
                                   keep_audio=audio, overwrite=force, on_start=on_start, on_progress=on_progress)
    if not quiet:
        s = report.stats
        err.print(escape(f"wrote {dst}: {report.frames_in} -> {report.frames_out} frames at {report.fps_out} fps "
                         f"({s.pairs_interpolated} pairs interpolated, {s.pairs_duplicate} duplicates, "
                         f"{s.scene_cuts} scene cuts) in {time.perf_counter() - t0:.1f} s"),
                  highlight=False, soft_wrap=True)
        for w in report.warnings:
            err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="Folder of videos and/or frame folders to learn from.",
                                       show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log, config.")] = Path("runs/film"),
    model: Annotated[str, typer.Option("--model", "-m", help="Architecture: film.")] = "film",
    preset: Annotated[str | None, typer.Option(help="Model preset (film-s, film-m, film-tiny).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Held-out clips for periodic PSNR.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Total optimiser steps.")] = 5000,
    batch: Annotated[int, typer.Option(min=1, help="Triplets per step.")] = 8,
    crop: Annotated[int, typer.Option(min=32, help="Training crop size (pixels).")] = 160,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    max_frames: Annotated[int, typer.Option("--max-frames", min=3, help="Frames kept in RAM per clip.")] = 240,
    resume: Annotated[bool, _flag("--resume/--no-resume", help="Continue from OUT/last.pt if it exists.")] = True,
    finetune: Annotated[Path | None, typer.Option(help="Start from these weights (.safetensors).")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the final (EMA) weights here as .safetensors.")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or cuda:N.")] = "auto",
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop (with a checkpoint) after "
                                                      "this long; run again to resume.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Folder for decoded-clip caches (default OUT/cache).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train an interpolator on any folder of videos (drop-frame triplets at strides 1-3).

    Checkpoints go to OUT/last.pt every 250 steps and on Ctrl-C; a second run with the same OUT resumes.
    """
    if not data.exists():
        raise UsageError(f"--data {data} does not exist; check the path")

    from framefill.pipeline import resolve_device
    from framefill.train.data import DataConfig
    from framefill.train.loop import TrainConfig, Trainer

    dev = resolve_device(device)
    cfg = TrainConfig(model=model, preset=preset, steps=steps, batch=batch, lr=lr, seed=seed,
                      finetune=str(finetune) if finetune else None,
                      data=DataConfig(crop=crop, max_frames=max_frames), val_every=500)
    trainer = Trainer(cfg, data, out, val=val, device=dev, cache_dir=cache or out / "cache")
    last = out / "last.pt"
    if resume and last.exists():
        trainer.load(last)
        err.print(f"resumed from {last} at step {trainer.step}")
    summary = trainer.dataset.summary()
    err.print(f"training {model} on {summary['triplets']} triplets from {summary['clips']} clips, {dev}")
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("train", total=steps, completed=trainer.step, info="")

        def on_step(step: int, rec: dict) -> None:
            info = f"loss {rec['total']:.4f}" + (f"  val {rec['val_psnr']:.2f} dB" if "val_psnr" in rec else "")
            progress.update(task, completed=step, info=info)

        trainer.run(max_seconds=max_minutes * 60 if max_minutes else None, on_step=on_step)
    if export and trainer.step >= steps:
        trainer.export(export)
        err.print(f"exported {export}")
    err.print(f"step {trainer.step}/{steps}; checkpoint {last}")


@app.command()
def info(
    weights: Annotated[Path | None, typer.Argument(help="A weights file (default: the shipped ones).")] = None,
) -> None:
    """Show what a weights file holds: architecture, config, training and measured quality."""
    import json

    from framefill.checkpoint import load_safetensors, read_metadata
    from framefill.models import architectures, default_weights

    files = [weights] if weights else [default_weights(a) for a in architectures()]
    for f in files:
        if not f.exists():
            raise UsageError(f"{f} does not exist; name a weights file: framefill info PATH")
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


def main() -> None:
    """Entry point of ``framefill`` and ``python -m framefill``: logging as FRAMEFILL_LOG says, then the app."""
    logging.basicConfig(level=os.environ.get("FRAMEFILL_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    # kill and `docker stop` send SIGTERM, which ends Python without unwinding and so leaves a hidden partial
    # output behind; turned into a KeyboardInterrupt it cleans up like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    app()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
