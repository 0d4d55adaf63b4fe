"""``framefill interp`` (a video, a frame folder or a pair; resumable, or one segment of a fan-out) and
``framefill join`` (the segments of a fan-out into one video)."""

from __future__ import annotations

import re
import time
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from framefill import cli_adapt
from framefill.cli_app import (
    DeviceOption,
    ModelOption,
    PrecisionOption,
    UsageError,
    WeightsOption,
    _flag,
    _parse_fps,
    err,
    parse_memory,
)


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
    adapt: Annotated[bool, _flag("--adapt", help="First fine-tune film's learned selector on the input's own frames "
                                               "(triplets of them) for --adapt-seconds, and interpolate with it where "
                                               "it scores better than the loaded weights on held-out triplets of "
                                               "the input (the summary says which). The weights file is not "
                                               "changed.")] = False,
    adapt_seconds: Annotated[str | None, typer.Option("--adapt-seconds", metavar="SECONDS", show_default=False,
                                                      help="The time --adapt may take, sampling and checking "
                                                           "included: 60 by default (giving it implies --adapt)."
                                                      )] = None,
    save_adapted: Annotated[Path | None, typer.Option("--save-adapted", metavar="FILE", show_default=False,
                                                      help="With --adapt: also write the weights the run used to "
                                                           "FILE (.safetensors), for --weights FILE later.")] = None,
    force: Annotated[bool, _flag("--force", "-y", help="Overwrite an existing output.")] = False,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar, and no summary line (nor the notes "
                                 "printed with it).")] = False,
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
    framefill interp clip.mp4 smooth.mp4 --adapt       learn the clip for a minute first
    framefill interp clip.mp4 --segments 8 --segment 3 --work parts/   one of 8 ranges; then framefill join
    """
    # Checks that need neither torch nor the input's contents first: a typo fails at once.
    fan_out = _check_segment_options(paths, segments, segment, work, resume, segment_length)
    if fan_out:
        paths = [*paths, work]  # type: ignore[list-item]  # for the checks below; the segments go to --work
    if len(paths) not in (2, 3):
        raise UsageError(f"interp takes INPUT OUTPUT or A B MID (got {len(paths)} paths); see framefill interp -h")
    if adapt and len(paths) == 3 and re.fullmatch(r"\d+(\.\d*)?", str(paths[2])) and not paths[2].exists():
        raise UsageError(f"--adapt takes no value; give its budget as --adapt-seconds {paths[2]}")
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
    adapt_s = cli_adapt.adapt_budget(adapt, adapt_seconds, save_adapted, paths, model)

    from framefill.pipeline import (
        interpolate_images,
        interpolate_video,
        load_interpolator,
        resolve_device,
        resolve_dtype,
    )
    from framefill.schedule import ScheduleConfig, slowmo_rates
    from framefill.tiling import TileConfig
    from framefill.video import EncodeOptions

    factor, target = slowmo_rates(factor, target, slow)  # interpolated frames per second of footage

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
    used = Path(weights) if weights else _default_weights(model)
    note = ""
    # An adapted job is named by the weights it adapted from and its budget, not by the adapted file (which differs
    # from one adaptation to the next), so that a rerun of a finished job is recognised before it adapts again.
    ident = None if adapt_s is None else cli_adapt.adapt_identity(used, adapt_s)
    enc = encode or EncodeOptions.for_path(dst if not fan_out else Path("out.mp4"))
    spec_for = partial(cli_adapt.job_spec, model=model, dtype=dtype, schedule=schedule, encode=enc, in_fps=in_rate,
                       audio=audio, slow=slow, ident=ident)
    rerun = (adapt_s is not None and segmented and not fan_out and not force
             and cli_adapt.finished(src, dst, net, spec_for(used)))
    if adapt_s is not None and not rerun:
        if resume is False:  # before the adaptation, which a resumable job keeps in its work folder
            _discard_work(dst)
        work = (dst if fan_out else _work_dir(dst)) if segmented else None
        net, used, note = cli_adapt.adapted(src, used, model, dev, dtype, adapt_s, in_rate, work, quiet, save_adapted)
        note = f"; {note}"
    if segmented:
        spec = spec_for(used)
        with progress:
            _interp_segments(src, dst, net, spec, dev, fan_out=fan_out, segments=segments, segment=segment,
                             fresh=resume is False and adapt_s is None, length=segment_length, force=force,
                             quiet=quiet, on_start=on_start, on_progress=on_progress, note=note)
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
                         f"({_counts(s)}{tiled}) in {time.perf_counter() - t0:.1f} s{note}"),
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


def _work_dir(dst: Path) -> Path:
    from framefill.resume import work_dir_for

    return work_dir_for(dst)


def _default_weights(model: str) -> Path:
    from framefill.models import default_weights

    return default_weights(model)


def _interp_segments(src: Path, dst: Path, net: Any, spec: Any, dev: Any, *, fan_out: bool, segments: int | None,
                     segment: int | None, fresh: bool, length: int | None, force: bool, quiet: bool,
                     on_start: Any, on_progress: Any, note: str = "") -> None:
    """interp through segments: one range of a fan-out into --work, or a resumable job."""
    from framefill.resume import finished_job, interpolate_resumable, render_part

    t0 = time.perf_counter()
    if fan_out:
        assert segments is not None and segment is not None
        report, seg, made = render_part(src, dst, segments, segment, net, spec, device=dev, on_start=on_start,
                                        on_progress=on_progress)
        what = (f"wrote segment {segment} of {segments} to {dst}: output frames {seg.outputs.start} to "
                f"{seg.outputs.stop - 1}, from input frames {seg.first} to {seg.last}" if made else
                f"segment {segment} of {segments} is already in {dst}; nothing to do")
    elif not force and (done := finished_job(src, dst, net, spec)) is not None:  # a rerun of a finished job
        report, made = done, False
        what = (f"{dst} is already complete ({report.frames_out} frames at {report.fps_play or report.fps_out} fps, "
                "made by this same job); nothing to do")
    else:
        report = interpolate_resumable(src, dst, net, spec, device=dev, overwrite=force, fresh=fresh,
                                       segment_length=length, on_start=on_start, on_progress=on_progress)
        s = report.stats
        what = (f"wrote {dst}: {report.frames_in} -> {report.frames_out} frames at {report.fps_play or report.fps_out} "
                f"fps ({_counts(s, ' in this run')})")
        made = True
    if not quiet:
        took = f" in {time.perf_counter() - t0:.1f} s" if made else ""
        err.print(escape(what + took + note), highlight=False, soft_wrap=True)
        for w in report.warnings:
            err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)


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


def _counts(stats: Any, interpolated: str = "") -> str:
    """The summary line's counts, singular where one: "1 pair interpolated, 2 duplicates, 0 scene cuts"."""
    def n(k: int, one: str, many: str) -> str:
        return f"{k} {one if k == 1 else many}"
    return (f"{n(stats.pairs_interpolated, 'pair', 'pairs')} interpolated{interpolated}, "
            f"{n(stats.pairs_duplicate, 'duplicate', 'duplicates')}, {n(stats.scene_cuts, 'scene cut', 'scene cuts')}")
