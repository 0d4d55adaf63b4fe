"""The bundled ffmpeg's processes: probing (``scan``), decoding to raw frames (``decode``) and encoding from them
(``Encoder``), each a child that stops with its caller, and what they print when they fail.

Internal to ``framefill.video``, which holds the public API. What the probe prints is read by ``ffmpeg_banner``; the
encoder's arguments come from ``ffmpeg_args``. Only the binary that imageio-ffmpeg ships is used.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import suppress
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from framefill.ffmpeg_args import (
    ALIAS,
    DEEP_CODECS,
    GIF_MAX_FPS,
    OUTPUT_EXTS,
    EncodeOptions,
    carry_args,
    video_args,
)
from framefill.ffmpeg_banner import BT709, Colour, Stream, comment, packet_times, parse_header
from framefill.frames import VideoError, check_parent, publish_mode, unwritable

GENERIC = re.compile(  # ffmpeg's closing lines that say that it failed, not why
    r"^(Conversion failed|Terminating thread|Nothing was written|Error closing|Exiting|frame=|size=|video:|"
    r"Error while|Error sending|Task finished|At least one output|Could not open encoder before EOF|"
    r"Error splitting the argument list)"
)
HARMLESS = re.compile(  # ffmpeg notes that are no problem: swscale on full-range (yuvj*) input, which it converts
    # right anyway; palettegen finding a colour twice in a GIF frame; swscale having no fast path to 16-bit RGB; a
    # stream without a timescale (an MP4's cover picture, which is not decoded)
    r"deprecated pixel format used|Duped color|No accelerated colorspace conversion|timescale not set"
)


@functools.cache
def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg binary."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def session() -> dict[str, Any]:
    """Popen arguments that keep a Ctrl-C in the terminal from reaching ffmpeg: Python stops it instead."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def relevant(lines: Iterable[str]) -> str | None:
    """The last line of ffmpeg's stderr that says why it failed, without its ``[muxer @ 0x...]`` prefix."""
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line) for line in lines]
    return next((line for line in reversed(lines) if line and not GENERIC.match(line)), lines[-1] if lines else None)


class Ffmpeg:
    """One ffmpeg child whose stderr a thread drains into ``lines``; ``stop()`` kills and reaps it."""

    def __init__(self, args: list[str], *, stdin: int, stdout: int) -> None:
        self.lines: deque[str] = deque(maxlen=64)
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "warning", *args]
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, **session())
        self._thread = threading.Thread(target=self._drain, name="ffmpeg-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            if line := raw.decode(errors="replace").strip():
                self.lines.append(re.sub(r" @ 0x[0-9a-f]+\]", "]", line))  # "[h264 @ 0x55d0...]" -> "[h264]"

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout)
        self._thread.join(timeout)  # stderr is complete once the thread has read its end
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        self.proc.wait()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.proc.stderr.close()  # type: ignore[union-attr]


def file_arg(path: Path | str) -> str:
    """``path`` as an ffmpeg argument: absolute, so that "-x.mp4" is no option and "a:b.mp4" no protocol."""
    return os.path.abspath(path)


@functools.cache
def encoders() -> frozenset[str]:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, stdin=subprocess.DEVNULL)
    return frozenset(re.findall(r"^\s*[VAS][\w.]{5}\s+(\S+)", out.stdout.decode(errors="replace"), flags=re.M))


def check_input(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file")


def scan(path: Path, count_frames: bool) -> tuple[list[Stream], str, int | None, list[Fraction] | None]:
    """Run ``ffmpeg -i``; return the streams, the header text, and with ``count_frames`` (a pass that reads every
    video packet without decoding) the packet count and their times (``packet_times``; None where not counted)."""
    check_input(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", file_arg(path)]
    if count_frames:
        cmd += ["-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-"]  # one line per packet: dts, pts, ...
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if count_frames else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, **session())
    text = done.stderr.decode(errors="replace")
    parsed = parse_header(text)
    if parsed is None:
        detail = relevant(text.splitlines())
        raise VideoError(f"{path} is not a readable video (truncated, or not a video?)", detail=detail)
    streams, header = parsed
    if not count_frames or done.returncode != 0:
        return streams, header, None, None
    return streams, header, *packet_times(done.stdout.decode(errors="replace"))



def comment_of(path: Path) -> str:
    """A file's own comment tag (the container's); "" when it has none or is no readable video."""
    try:
        return comment(scan(path, False)[1]) or ""
    except VideoError:
        return ""


def read_exactly(stream: Any, buf: bytearray) -> int:
    view, got = memoryview(buf), 0
    while got < len(buf) and (n := stream.readinto(view[got:])):
        got += n
    return got


def decode(path: Path, width: int, height: int, warnings: list[str], matrix: str | None = None,
           deinterlace: bool = False, deep: bool = False) -> Iterator[np.ndarray]:
    """Decode every frame of the first video stream as ``(height, width, 3)`` uint8 RGB, as the file has them.

    ``-fps_mode passthrough`` keeps ffmpeg from dropping or repeating frames. ``matrix`` (``untagged_matrix``) is
    the YUV matrix for a stream that names none. ``deinterlace`` runs bwdif on the frames flagged interlaced, one
    frame out per frame in (the two fields of a frame were shot 1/50 or 1/60 s apart: left combed, every moving
    edge would be interpolated as a comb). ``deep`` gives uint16 frames (all 16 bits used) for video of more
    than 8 bits. ffmpeg's complaints about a damaged file are appended to ``warnings``; VideoError is raised only
    if no frame could be decoded.
    """
    filters = [*(["bwdif=mode=send_frame:deint=interlaced"] if deinterlace else []),
               *([f"scale=in_color_matrix={matrix}"] if matrix else [])]
    args = ["-nostdin", "-i", file_arg(path), "-map", "0:V:0", "-fps_mode", "passthrough",
            *(["-vf", ",".join(filters)] if filters else []), "-f", "rawvideo"]
    ff = Ffmpeg([*args, "-pix_fmt", "rgb48le" if deep else "rgb24", "pipe:1"], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE)
    item = np.dtype(np.uint16 if deep else np.uint8)  # rgb48le: native order on the little-endian CPUs we run on
    count = 0
    try:
        while True:
            buf = bytearray(width * height * 3 * item.itemsize)  # a fresh, writable buffer per frame: kept by callers
            got = read_exactly(ff.proc.stdout, buf)
            if got < len(buf):
                if got:
                    warnings.append(f"the last frame was incomplete ({got} of {len(buf)} bytes); dropped")
                break
            count += 1
            yield np.frombuffer(buf, dtype=item).reshape(height, width, 3)
        rc = ff.wait()
        if count == 0:
            raise VideoError(f"{path} has no decodable frames; check the file", detail=relevant(ff.lines))
        warnings.extend(line for line in ff.lines if not HARMLESS.search(line))
        if rc != 0:
            warnings.append(f"ffmpeg stopped with exit code {rc}")
    finally:
        ff.stop()


def discard(ff: Ffmpeg, tmp: Path) -> None:
    ff.stop()
    tmp.unlink(missing_ok=True)


class Encoder:
    """ffmpeg encoding raw RGB from its stdin into a hidden temp file beside ``path``, renamed on ``close()``."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, opts: EncodeOptions,
                 audio_from: Path | None, warnings: list[str], sar: Fraction = Fraction(1),
                 colour: Colour = BT709, deep: bool = False) -> None:  # fmt: skip
        ext = ALIAS.get(path.suffix.lower(), path.suffix.lower())
        if ext not in OUTPUT_EXTS:
            exts = ", ".join(sorted(OUTPUT_EXTS))
            raise VideoError(f"cannot write {path.suffix} files; use one of {exts}, or a folder for frames")
        if ext == ".gif" and fps > GIF_MAX_FPS:
            raise VideoError(f"a GIF shows at most {GIF_MAX_FPS} frames per second (its frame delays are whole "
                             f"hundredths of a second), not {float(fps):.4g}; ask for --fps {GIF_MAX_FPS} or less, "
                             "or write .mp4")
        parent = check_parent(path)
        rate = f"{fps.numerator}/{fps.denominator}"
        width, height = size
        if deep and opts.codec not in DEEP_CODECS:
            raise VideoError(f"{opts.codec} takes no 16-bit frames; use {', '.join(sorted(DEEP_CODECS))}")
        if deep and opts.pix_fmt == EncodeOptions.pix_fmt:
            opts = dataclasses.replace(opts, pix_fmt="yuv420p10le")  # deep frames keep 10 bits
        if opts.codec not in encoders():
            raise VideoError(f"encoder {opts.codec!r} is not in the bundled ffmpeg; use libx264, libx265, libvpx-vp9 "
                             "or ffv1")
        video = video_args(opts, ext, width, height, colour)
        if sar != 1:  # as a display aspect ratio, which ffmpeg turns back into this pixel aspect ratio
            video += ["-aspect", f"{width * sar.numerator}:{height * sar.denominator}"]
        carried = scan(Path(audio_from), False)[0] if audio_from and not Path(audio_from).is_dir() else []
        carry = carry_args(ext, carried, warnings)
        args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb48le" if deep else "rgb24", "-video_size", f"{width}x{height}",
                "-framerate", rate,
                "-i", "pipe:0", *(["-i", file_arg(audio_from)] if carry else []), "-map", "0:v:0", *video, "-r", rate,
                *carry, *(["-movflags", "+faststart"] if ext in (".mp4", ".mov") else []), *opts.extra]  # fmt: skip
        try:
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
        except OSError as e:
            raise unwritable(parent, e) from None
        os.close(fd)
        self.path, self._tmp = path, Path(tmp)
        try:
            self._ff = Ffmpeg([*args, file_arg(tmp)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._cleanup = weakref.finalize(self, discard, self._ff, self._tmp)  # also if never closed
        self.warnings = warnings

    def _failed(self, what: str) -> VideoError:
        with suppress(subprocess.TimeoutExpired):
            self._ff.wait(timeout=10)
        return VideoError(f"ffmpeg {what} {self.path.name}; check the encoder options", relevant(self._ff.lines))

    def write(self, frame: np.ndarray) -> None:
        try:
            self._ff.proc.stdin.write(memoryview(frame).cast("B"))  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError):
            raise self._failed("stopped while writing") from None

    def close(self) -> None:
        with suppress(BrokenPipeError):
            self._ff.proc.stdin.close()  # type: ignore[union-attr]  # EOF: ffmpeg flushes and finishes the file
        if self._ff.wait() != 0:
            raise self._failed("could not write")
        self.warnings.extend(line for line in self._ff.lines if not HARMLESS.search(line))
        publish_mode(self._tmp)
        os.replace(self._tmp, self.path)
        self._cleanup.detach()
        self._ff.stop()

    def abort(self) -> None:
        self._cleanup()
