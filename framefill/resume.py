"""Jobs kept as encoded segments in a work folder: resumed after an interruption, or spread over machines.

Work folder. ``manifest.json`` (what fixes the output: the input's identity, the weights' hash, every setting that
changes a frame, the frame counts, the plan of segments) and the finished segments ``00000.mp4``, ``00001.mp4``...,
each written beside its final name and renamed when complete (``FrameSink``), so a kill at any moment loses at most
the segment in progress. A job whose manifest differs from the folder's is refused with one line naming what
changed, never mixed. Segments are MP4 whatever the output: its timescale follows the rate, so the concat demuxer
joins them with the single run's exact timestamps (Matroska's 1 ms ticks and NUT segments came out a tick off at
each join); it holds every codec framefill encodes.

Join. The concat demuxer copies the segments' video, and the whole input's audio and subtitles are muxed in as
``FrameSink`` does it (``carry_args``), into a temp file inside the work folder, moved onto the output when it is
complete; only then is a resumed job's work folder removed. Killed during the join, the segments are untouched and
the next run joins again.

Resume (``interpolate_resumable``): ``OUT.framefill-work`` beside the output; segments of a few seconds of output.
Fan-out (``render_part``): segment K of N into a folder every machine sees, ``join`` once all are there. Every
segment decodes the input from its start (decoding is two orders of magnitude faster than the model on a CPU) and
reads only the frames its outputs need (``framefill.segments``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from framefill import __version__
from framefill.ffmpeg import Ffmpeg, comment_of, file_arg, relevant, scan
from framefill.ffmpeg_args import ALIAS, OUTPUT_EXTS, carry_args
from framefill.frames import VideoError, check_parent, publish_mode
from framefill.pipeline import Job, JobReport, plan_job
from framefill.schedule import InterpolationStats, ScheduleConfig
from framefill.segments import Feed, Segment, context_for, plan, segment_frames, split
from framefill.video import EncodeOptions, FrameSink, FrameSource, ThreadedSink, check_alike, prefetch, probe

WORK_SUFFIX = ".framefill-work"
MANIFEST = "manifest.json"
SEGMENT_EXT = ".mp4"
SEGMENT_SECONDS = 4  # of output per resumable segment: what an interruption loses at most
FORMAT = 1  # of the manifest
SAMPLE = 1 << 20  # bytes hashed at each end of the input: its identity, also for a copy on another machine
JOB_TAG = "framefill job "  # a joined output's comment: this, then its job's id (``finished_job`` reads it)
LABELS = {  # manifest keys -> how a refusal names them
    "input": "input video", "model": "model", "weights": "weights", "precision": "precision", "factor": "--factor",
    "fps": "target rate", "max_depth": "--max-depth", "scene_detect": "--scene-detect", "tile": "--tile",
    "max_memory": "--max-memory", "in_fps": "--in-fps", "slowmo": "--slowmo", "encode": "encoding options",
    "audio": "--audio", "segments": "number of segments", "framefill": "framefill version", "format": "work format",
}


@dataclass(frozen=True)
class JobSpec:
    """What the caller chose: everything besides the input that fixes the output."""

    model: str  # architecture name (film, convlstm)
    weights: Path  # the weights file the model was loaded from (hashed into the manifest)
    dtype: torch.dtype  # precision of the model's convolutions
    schedule: ScheduleConfig
    encode: EncodeOptions
    in_fps: Fraction | None = None  # a frame folder's rate, or a video's overridden
    keep_audio: bool = True  # carry audio and subtitles over (at the join)
    slowmo: int = 1  # play the interpolated frames this many times slower
    weights_id: str | None = None  # the weights' identity where not the file's hash (--adapt: what it adapted from)


def work_dir_for(dst: Path) -> Path:
    """The work folder of a resumable job writing ``dst``: ``dst.framefill-work`` beside it."""
    return Path(dst).with_name(Path(dst).name + WORK_SUFFIX)


def has_work(dst: Path) -> bool:
    """Whether a resumable job writing ``dst`` was interrupted and left its work."""
    return (work_dir_for(dst) / MANIFEST).is_file()


def discard_work(dst: Path) -> None:
    """Remove the work an interrupted resumable job writing ``dst`` left (--no-resume)."""
    if has_work(dst):
        shutil.rmtree(work_dir_for(dst))


def segment_path(work: Path, index: int) -> Path:
    return work / f"{index:05d}{SEGMENT_EXT}"


def _open(src: Path, net: torch.nn.Module, spec: JobSpec, like: Path) -> tuple[FrameSource, Job]:
    """The input, and the job as ``interpolate_video`` would run it (``like``: the output's kind)."""
    source = FrameSource(src, fps=spec.in_fps)
    info = source.info
    if info.n_frames is None or info.n_frames < 2:
        source.close()
        what = "could not be counted" if info.n_frames is None else f"is {info.n_frames}"
        raise VideoError(f"{src}: its number of frames {what}; segments need a video of at least 2 counted frames")
    job = plan_job(src, info, net, spec.schedule, spec.encode, like=like, slowmo=spec.slowmo,
                   keep_audio=spec.keep_audio)
    source.deep = job.deep
    return source, job


def input_identity(path: Path) -> dict[str, object]:
    """An input's identity, also as a copy elsewhere: size, hash of first and last MiB (a folder: names, sizes)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        for p in files:
            digest.update(f"{p.name}\0{p.stat().st_size}\n".encode())
        return {"files": len(files), "sha256": digest.hexdigest()}
    size = path.stat().st_size
    with path.open("rb") as f:
        digest.update(f.read(SAMPLE))
        f.seek(max(0, size - SAMPLE))
        digest.update(f.read(SAMPLE))
    return {"size": size, "sha256": digest.hexdigest()}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(src: Path, spec: JobSpec, job: Job, ranges: list[range]) -> dict[str, object]:
    s = spec.schedule
    return json.loads(json.dumps({  # as it reads back: lists, not tuples
        "format": FORMAT, "framefill": __version__, "input": input_identity(src), "model": spec.model,
        "weights": spec.weights_id or file_digest(spec.weights), "precision": str(spec.dtype).removeprefix("torch."),
        "factor": s.factor, "fps": None if s.fps is None else str(s.fps), "max_depth": s.max_depth,
        "scene_detect": s.detect_scenes, "tile": s.tiling.tile, "max_memory": s.tiling.max_memory,
        "in_fps": None if spec.in_fps is None else str(spec.in_fps), "slowmo": spec.slowmo,
        "encode": dataclasses.asdict(spec.encode) | {"deep": job.deep}, "audio": job.audio,
        "frames_in": job.info.n_frames, "frames_out": job.total, "fps_out": str(job.fps_play),
        "segments": [[r.start, r.stop] for r in ranges],
        "source": str(src.resolve()),  # where the join finds the audio (not compared: a copy elsewhere is the same)
    }))


def _differs(old: dict, new: dict, compare_plan: bool) -> str | None:
    """The first setting ``old`` and ``new`` disagree on, worded for the user; None if they are the same job."""
    if (ra := _rate(old)) != (rb := _rate(new)):
        return f"it was made with {ra}, not {rb}"
    for key in (*LABELS, "frames_in", "frames_out", "fps_out"):
        a, b = old.get(key), new.get(key)
        if a == b or key in ("factor", "fps") or (key == "segments" and not compare_plan):
            continue
        if key == "segments":
            return f"it is split into {len(a or [])} segments, not {len(b or [])}"
        if key == "input":
            return "it was made from another input (another file, or the file has changed)"
        if key == "weights":
            return "it was made with other weights (another file, a changed file, or with or without --adapt)"
        if isinstance(a, dict) and isinstance(b, dict):
            sub = next(k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k))
            return f"it was made with {sub.replace('_', ' ')} {_shown(a.get(sub))}, not {_shown(b.get(sub))}"
        return f"it was made with {LABELS.get(key, key.replace('_', ' '))} {_shown(a)}, not {_shown(b)}"
    return None


def _job_tag(manifest: dict) -> str:
    """A joined output's comment, naming its job: a hash of its manifest less the plan and the input's path."""
    same = json.dumps({k: v for k, v in manifest.items() if k not in ("segments", "source")}, sort_keys=True)
    return JOB_TAG + hashlib.sha256(same.encode()).hexdigest()[:16]


def finished_job(src: Path, dst: Path, net: torch.nn.Module, spec: JobSpec) -> JobReport | None:
    """The report of the job writing ``dst`` if ``dst`` is its complete output already (the same command run again
    once the job is done, as a retrying scheduler does: nothing to do; what a kill after the join left is removed)."""
    if not (made := comment_of(Path(dst)) if Path(dst).is_file() else "").startswith(JOB_TAG):
        return None
    source, job = _open(Path(src), net, spec, Path(dst))
    with source:
        if made != _job_tag(_manifest(Path(src), spec, job, [])):
            return None
    shutil.rmtree(work_dir_for(dst), ignore_errors=True)
    return JobReport(job.info.n_frames, job.total, job.info.fps, job.fps_out, InterpolationStats(), job.notes,
                     job.fps_play if spec.slowmo > 1 else None)


def _rate(manifest: dict) -> str:
    return f"--factor {manifest.get('factor')}" if manifest.get("factor") else f"--fps {manifest.get('fps')}"


def _shown(value: object) -> str:
    return "default" if value is None else str(value)


def read_manifest(work: Path) -> dict:
    try:
        return json.loads((Path(work) / MANIFEST).read_text())
    except FileNotFoundError:
        raise VideoError(f"{work} holds no framefill segments (no {MANIFEST}); check the folder") from None
    except (OSError, ValueError) as e:
        raise VideoError(f"{work}/{MANIFEST} cannot be read ({e}); render the segments into a new folder") from None


def _prepare(work: Path, manifest: dict, *, fresh: bool, compare_plan: bool, hint: str) -> dict:
    """The manifest in force in ``work``: the folder's own when it holds this job, else ``manifest``, written
    atomically. A folder holding another job is refused (``fresh`` empties it instead)."""
    if fresh and work.exists():
        shutil.rmtree(work)
    if (work / MANIFEST).exists():
        old = read_manifest(work)
        if why := _differs(old, manifest, compare_plan):
            raise VideoError(f"{work} holds the work of another job: {why}; {hint}")
        return old
    check_parent(work)
    work.mkdir(exist_ok=True)
    tmp = work / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, work / MANIFEST)
    return manifest


def _clean(work: Path) -> None:
    """Remove what a killed run left half-written in ``work`` (segments and joins in progress)."""
    for p in work.glob(".*"):
        if p.is_file() and (".partial" in p.name or p.name.startswith(".join")):
            p.unlink(missing_ok=True)


def _render(source: FrameSource, job: Job, work: Path, todo: list[Segment], net: torch.nn.Module, spec: JobSpec,
            device: torch.device, stats: InterpolationStats, on_progress: Callable[[int], None] | None,
            done: int) -> None:
    """Make the segments ``todo`` (in order) in one pass over the input; ``done`` frames were made before."""
    info = job.info
    frames = prefetch(iter(source), depth=8)
    try:
        feed = Feed(frames)
        for seg in todo:
            sink = FrameSink(segment_path(work, seg.index), width=info.width, height=info.height, fps=job.fps_play,
                             options=spec.encode, overwrite=True, sar=info.sar, colour=info.colour, deep=job.deep)

            def progress(n: int, base: int = done) -> None:
                if on_progress is not None:
                    on_progress(base + n)

            with ThreadedSink(sink) as out:
                for frame in segment_frames(feed.take(seg.first, seg.last), seg, job.timeline, info.fps, net,
                                            spec.schedule, device=device, dtype=spec.dtype, stats=stats,
                                            on_progress=progress):
                    out.write(frame)
            done += len(seg.outputs)
    except ValueError as e:  # the input ended early, a frame of another size
        raise VideoError(f"{source.path}: {e}") from None
    finally:
        frames.close()


def _check_output(src: Path, dst: Path, overwrite: bool) -> None:
    ext = ALIAS.get(dst.suffix.lower(), dst.suffix.lower())
    if ext not in OUTPUT_EXTS or ext == ".gif":
        raise VideoError(f"segments join into video files (.mp4, .mkv, .mov, .webm...), not {dst.name}; name a "
                         "video file or leave out --resume")
    if dst.exists() and not overwrite:
        raise VideoError(f"{dst} exists; use --force to overwrite")
    if src.exists() and dst.resolve() == src.resolve():
        raise VideoError(f"the output {dst} is the input; choose another output path")
    check_parent(dst)


def interpolate_resumable(src: Path, dst: Path, net: torch.nn.Module, spec: JobSpec, *, device: torch.device,
                          overwrite: bool = False, fresh: bool = False, segment_length: int | None = None,
                          on_start: Callable[[int | None, Fraction, Fraction], None] | None = None,
                          on_progress: Callable[[int], None] | None = None) -> JobReport:
    """``interpolate_video`` that keeps its finished work: run again after an interruption, it goes on where it
    stopped (``fresh``: it starts over). The output equals an uninterrupted run's, frame for frame.

    Segments of ``segment_length`` output frames (default ``SEGMENT_SECONDS`` of output) go to
    ``work_dir_for(dst)``; once all are made they are joined into ``dst`` and the folder is removed. A failure
    before the first segment is finished leaves nothing; a Ctrl-C or a kill leaves the folder to resume from.
    """
    src, dst = Path(src), Path(dst)
    _check_output(src, dst, overwrite)
    source, job = _open(src, net, spec, dst)
    work = work_dir_for(dst)
    with source:
        length = segment_length or max(1, math.ceil(job.fps_play * SEGMENT_SECONDS))
        manifest = _manifest(src, spec, job, split(job.total, length=length))
        created = fresh or not work.exists()
        manifest = _prepare(work, manifest, fresh=fresh, compare_plan=False,
                            hint="give --no-resume to discard its finished segments and start over, or another output")
        _clean(work)
        segments = plan(job.timeline, job.info.n_frames, [range(a, b) for a, b in manifest["segments"]],
                        context_for(net))
        todo = [s for s in segments if not segment_path(work, s.index).exists()]
        made = sum(len(s.outputs) for s in segments) - sum(len(s.outputs) for s in todo)
        if on_start:
            on_start(job.total, job.info.fps, job.fps_out)
        if on_progress and made:
            on_progress(made)
        stats = InterpolationStats()
        try:
            _render(source, job, work, todo, net, spec, device, stats, on_progress, made)
        except Exception:  # a failure (not a Ctrl-C or kill) before any segment was finished leaves nothing
            if created and len(todo) == len(segments) and not any(segment_path(work, s.index).exists()
                                                                  for s in segments):
                shutil.rmtree(work, ignore_errors=True)
            raise
    warnings = job.notes + list(source.warnings) + join(work, dst, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    stats.frames_out = job.total
    return JobReport(job.info.n_frames, job.total, job.info.fps, job.fps_out, stats, warnings,
                     job.fps_play if spec.slowmo > 1 else None)


def render_part(src: Path, work: Path, count: int, part: int, net: torch.nn.Module, spec: JobSpec, *,
                device: torch.device, on_start: Callable[[int | None, Fraction, Fraction], None] | None = None,
                on_progress: Callable[[int], None] | None = None) -> tuple[JobReport, Segment, bool]:
    """Segment ``part`` (1-based) of ``count`` of the job into the folder ``work`` (made if missing), for ``join``.

    Returns the report, the segment, and whether it was made now (False: ``work`` held it already).
    """
    src, work = Path(src), Path(work)
    if not 1 <= part <= count:
        raise VideoError(f"--segment {part} is not one of the {count} segments; give 1 to {count}")
    source, job = _open(src, net, spec, Path(f"out{SEGMENT_EXT}"))
    with source:
        if count > job.total:
            raise VideoError(f"{src} makes {job.total} output frames: at most {job.total} segments, not {count}")
        manifest = _manifest(src, spec, job, split(job.total, count=count))
        manifest = _prepare(work, manifest, fresh=False, compare_plan=True,
                            hint="give another --work folder for this job")
        seg = plan(job.timeline, job.info.n_frames, [range(*manifest["segments"][part - 1])], context_for(net))[0]
        seg = dataclasses.replace(seg, index=part - 1)
        stats = InterpolationStats()
        if on_start:
            on_start(len(seg.outputs), job.info.fps, job.fps_out)
        made = not segment_path(work, seg.index).exists()
        if made:
            _render(source, job, work, [seg], net, spec, device, stats, on_progress, 0)
    report = JobReport(seg.last - seg.first + 1, len(seg.outputs), job.info.fps, job.fps_out, stats,
                       job.notes + list(source.warnings), job.fps_play if spec.slowmo > 1 else None)
    return report, seg, made


def _quoted(path: str) -> str:
    """``path`` inside single quotes of a concat list, where a quote is written ``'\\''``."""
    return path.replace("'", "'\\''")


def join(work: Path, dst: Path, *, source: Path | None = None, overwrite: bool = False) -> list[str]:
    """Join the segments in ``work`` into ``dst`` with the audio and subtitles of the whole input (the manifest's,
    or ``source``: the same video elsewhere), atomically; returns warnings (streams the container cannot hold)."""
    work, dst = Path(work), Path(dst)
    manifest = read_manifest(work)
    n = len(manifest["segments"])
    if missing := [i + 1 for i in range(n) if not segment_path(work, i).exists()]:
        listed = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise VideoError(f"{work} lacks {len(missing)} of its {n} segments ({listed}); make them with framefill "
                         f"interp INPUT --segments {n} --segment K --work {work}")
    check_alike([segment_path(work, i) for i in range(n)], float(Fraction(manifest["fps_out"])), "segment")
    src = Path(source) if source is not None else Path(manifest["source"])
    _check_output(src, dst, overwrite)
    warnings: list[str] = []
    carried = []
    if manifest["audio"]:
        if not src.exists():
            raise VideoError(f"the input {src} is not here to take its audio and subtitles from; give --input PATH "
                             "(a copy of it)")
        if source is not None and input_identity(src) != manifest["input"]:
            raise VideoError(f"{src} is not the video these segments were made from; give that one")
        carried = scan(src, False)[0]
    ext = ALIAS.get(dst.suffix.lower(), dst.suffix.lower())
    carry = carry_args(ext, carried, warnings)
    listing = work / "concat.txt"
    listing.write_text("".join(f"file '{_quoted(file_arg(segment_path(work, i)))}'\n" for i in range(n)))
    _clean(work)
    tmp = work / f".join{dst.suffix}"
    args = ["-nostdin", "-y", "-f", "concat", "-safe", "0", "-i", file_arg(listing),
            *(["-i", file_arg(src)] if carry else []), "-map", "0:v:0", "-c:v", "copy", *carry,
            "-metadata", f"comment={_job_tag(manifest)}",
            *(["-movflags", "+faststart"] if ext in (".mp4", ".mov") else []), file_arg(tmp)]
    ff = Ffmpeg(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        if ff.wait() != 0:
            raise VideoError(f"ffmpeg could not join the segments into {dst.name}; a container that takes "
                             f"{manifest['encode']['codec']} (.mkv takes any)", detail=relevant(ff.lines))
    finally:
        ff.stop()
    got = probe(tmp).n_frames
    if got != manifest["frames_out"]:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"the joined video has {got} frames, not {manifest['frames_out']}; a segment in {work} is "
                         "damaged: delete it and make it again")
    publish_mode(tmp)
    os.replace(tmp, dst)
    return warnings
