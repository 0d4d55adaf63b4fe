"""The bundled ffmpeg: probing, decoding and encoding processes, what they print, and their arguments.

Internal to ``framefill.video``, which holds the public API (``EncodeOptions`` is re-exported there). Only the
binary that imageio-ffmpeg ships is used: there may be no system ffmpeg or ffprobe, so metadata is read from
the banner ``ffmpeg -i`` prints. That banner gives rates with two decimals; ``parse_rate`` recovers exact ones.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import subprocess
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from framefill.frames import VideoError, check_parent, publish_mode, unwritable

log = logging.getLogger(__name__)

OUTPUT_EXTS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".gif"})  # what FrameSink writes
ALIAS = {".m4v": ".mp4"}
AUDIO_COPY = {  # audio codecs each container takes as they are; .mkv takes any
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"},
    ".webm": {"opus", "vorbis"},
    ".avi": {"mp3", "ac3", "pcm_s16le"},
    ".ts": {"aac", "mp3", "mp2", "ac3", "eac3", "opus"},
}
AUDIO_FALLBACK = {".webm": "libopus", ".avi": "libmp3lame"}  # else aac
NO_AUDIO = frozenset({".gif"})  # containers without audio
GIF_MAX_FPS = 50  # GIF frame delays are whole hundredths of a second, and browsers slow down delays under 2
# GIF: a palette per frame (streams, unlike one palette for the whole clip, which holds every frame until the end)
GIF_FILTER = "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1:dither=sierra2_4a"
TEXT_SUBS = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
SUB_CODEC = {".mp4": "mov_text", ".mov": "mov_text", ".webm": "webvtt", ".mkv": "copy"}  # others: none
WEBM_CODECS = {"libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}
RGB_PIX_FMT = {"ffv1": "bgr0", "png": "rgb24"}  # lossless codecs keep RGB instead of the yuv420p default
VP9_SPEED = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 2, "slow": 1}
GENERIC = re.compile(  # ffmpeg's closing lines that say that it failed, not why
    r"^(Conversion failed|Terminating thread|Nothing was written|Error closing|Exiting|frame=|size=|video:|"
    r"Error while|Error sending|Task finished|At least one output|Could not open encoder before EOF|"
    r"Error splitting the argument list)"
)
HARMLESS = re.compile(  # ffmpeg notes that are no problem: swscale on full-range (yuvj*) input, which it converts
    # right anyway; palettegen finding a colour twice in a GIF frame; swscale having no fast path to 16-bit RGB
    r"deprecated pixel format used|Duped color|No accelerated colorspace conversion"
)
STREAM_LINE = re.compile(r"^\s*Stream #0:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): ([\w-]+)")


@dataclass(frozen=True)
class EncodeOptions:
    """How FrameSink encodes a video file; ``EncodeOptions.for_path`` picks defaults per extension."""

    codec: str = "libx264"  # ffmpeg encoder: libx264, libx265, libvpx-vp9 (.webm), ffv1 / png (lossless)
    crf: int = 18  # constant quality, lower is better (x264/x265: 0-51, vp9: 0-63); lossless codecs ignore it
    preset: str = "medium"  # x264/x265 speed preset, mapped onto -cpu-used for vp9; lossless codecs ignore it
    pix_fmt: str = "yuv420p"  # becomes yuv444p for odd sizes, and bgr0/rgb24 (RGB) for ffv1/png if left default
    extra: tuple[str, ...] = ()  # further ffmpeg output options, passed as given (an argument list, no shell)

    @classmethod
    def for_path(cls, path: Path) -> EncodeOptions:
        """Defaults for ``path``'s container: VP9 for .webm, H.264 (crf 18) for everything else."""
        ext = Path(path).suffix.lower()
        if ext == ".webm":
            return cls(codec="libvpx-vp9", crf=24)  # vp9's crf scale runs to 63; 24 looks like x264's 18
        if ext == ".gif":
            return cls(codec="gif", pix_fmt="pal8")
        return cls()


def parse_rate(text: str) -> Fraction:
    """Parse a frame rate as ffmpeg prints it ("30000/1001", "29.97", "30k") into an exact Fraction.

    A decimal is taken as rounded: the NTSC rate N*1000/1001 within rounding wins (29.97 -> 30000/1001,
    23.98 -> 24000/1001, 59.94 -> 60000/1001), else the fraction with the smallest denominator within rounding
    (16.67 -> 50/3, 12.5 -> 25/2).

    Raises:
        ValueError: if ``text`` is not a positive rate.
    """
    text = text.strip()
    if "/" in text:
        num, den = (int(part) for part in text.split("/"))
        if den == 0:
            raise ValueError(f"not a frame rate: {text!r}")
        rate = Fraction(num, den)
    elif text.endswith("k"):
        rate = Fraction(text[:-1]) * 1000
    else:
        rate = Fraction(text)
        if rate.denominator != 1:
            tol = Fraction(1, 2 * 10 ** len(text.partition(".")[2]))  # half a unit of the last printed digit
            ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
            rate = ntsc if abs(ntsc - rate) <= tol else _simplest(rate, tol)
    if rate <= 0:
        raise ValueError(f"not a frame rate: {text!r}")
    return rate


def _simplest(value: Fraction, tol: Fraction) -> Fraction:
    for den in range(1, 1002):
        if (num := round(value * den)) and abs(Fraction(num, den) - value) <= tol:
            return Fraction(num, den)
    return value.limit_denominator(1001)


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


@dataclass(frozen=True)
class Stream:
    index: int  # ffmpeg's stream index in its file
    kind: str  # Video, Audio, Subtitle, Data or Attachment
    codec: str
    text: str  # the stream's line and its indented lines (side data, metadata)


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
    start = text.find("Input #0")
    if start < 0:
        detail = relevant(text.splitlines())
        raise VideoError(f"{path} is not a readable video (truncated, or not a video?)", detail=detail)
    header = re.split(r"^(?:Output #|Stream mapping:)", text[start:], maxsplit=1, flags=re.M)[0]
    streams: list[Stream] = []
    for line in header.splitlines():
        if m := STREAM_LINE.match(line):
            streams.append(Stream(int(m[1]), m[2], m[3], line))
        elif streams and line.startswith("    "):
            streams[-1] = dataclasses.replace(streams[-1], text=streams[-1].text + "\n" + line)
    if not count_frames or done.returncode != 0:
        return streams, header, None, None
    return streams, header, *packet_times(done.stdout.decode(errors="replace"))


NO_PTS = -(2**63)  # AV_NOPTS_VALUE, as framecrc prints a missing timestamp


def packet_times(framecrc: str) -> tuple[int, list[Fraction] | None]:
    """The packet count, and the presentation times (seconds after the first, exact, sorted) in ffmpeg's framecrc
    output for one stream; None for the times when a packet has no timestamp or two share one."""
    lines = [line.split(",") for line in framecrc.splitlines() if line.strip() and not line.startswith("#")]
    tb = re.search(r"^#tb \d+: (\d+)/(\d+)", framecrc, flags=re.M)
    try:
        pts = sorted(int(fields[2]) for fields in lines)
    except (IndexError, ValueError):
        return len(lines), None
    if tb is None or not pts or pts[0] == NO_PTS or len(set(pts)) < len(pts):
        return len(lines), None
    unit = Fraction(int(tb[1]), int(tb[2]))
    return len(lines), [(p - pts[0]) * unit for p in pts]


def timing_drift(times: Sequence[Fraction], fps: Fraction) -> float:
    """The largest distance (seconds) between a frame's own time (``times``: seconds after the first frame) and
    where a constant ``fps`` puts it (frame i at i / fps): how far a video of variable frame rate strays when
    treated as constant."""
    return float(max((abs(t - i / fps) for i, t in enumerate(times)), default=Fraction(0)))


def pick_rate(stream_line: str) -> Fraction:
    rates = {}
    for kind in ("fps", "tbr"):
        with suppress(ValueError, ZeroDivisionError, TypeError):
            rates[kind] = parse_rate(re.search(rf"([\d.]+k?) {kind}\b", stream_line)[1])  # type: ignore[index]
    fps, tbr = rates.get("fps"), rates.get("tbr")
    if fps and tbr:
        return tbr if abs(tbr - fps) <= fps / 500 else fps  # nominal when they agree, else the average (VFR)
    if fps or tbr:
        return fps or tbr  # type: ignore[return-value]
    log.warning("no frame rate in %s; assuming 30 fps", stream_line.strip())
    return Fraction(30)


@functools.cache
def encoders() -> frozenset[str]:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, stdin=subprocess.DEVNULL)
    return frozenset(re.findall(r"^\s*[VAS][\w.]{5}\s+(\S+)", out.stdout.decode(errors="replace"), flags=re.M))


MATRICES = frozenset({"bt709", "fcc", "bt470bg", "smpte170m", "smpte240m", "ycgco", "bt2020nc", "bt2020c",
                      "smpte2085", "chroma-derived-nc", "chroma-derived-c", "ictcp", "gbr"})  # as ffmpeg prints them


PIX_FMT = re.compile(r", ((?:yuv|nv|p0|gray|gbr|rgb|bgr|ya|x2)\w*)(?:\(([^)]*)\))?(?=[,\s]|$)")


def pixel_format(stream_text: str) -> tuple[str, list[str]] | None:
    """The pixel format ffmpeg prints for a video stream and the notes in its brackets (range, colour tags, field
    order): ``("yuv420p10le", ["tv", "bt2020nc/bt2020/arib-std-b67"])``; None when it prints none."""
    m = PIX_FMT.search(stream_text)
    return (m[1], m[2].split(", ") if m[2] else []) if m else None


def _colour_tags(notes: list[str]) -> list[str] | None:
    """The ``matrix[/primaries/transfer]`` note of a pixel format, split; None when it names no matrix."""
    return next((note.split("/") for note in notes if note.split("/")[0] in MATRICES), None)


def untagged_matrix(stream_text: str) -> str | None:
    """The YUV to RGB matrix to decode a video stream with when it names none, as players pick it: BT.709 for HD
    (1280 wide or more, or over 576 lines), BT.601 for SD. None when the stream names its matrix or is not YUV.

    ffmpeg converts an untagged stream with BT.601 whatever its size, so untagged HD video (common: phones, screen
    recorders, many web encodes) would come out with other colours than a player shows, and framefill's output,
    tagged BT.709, would keep the shift.
    """
    fmt = pixel_format(stream_text)
    size = re.search(r", (\d+)x(\d+)", stream_text)
    if fmt is None or size is None or not fmt[0].startswith(("yuv", "nv", "p0")) or _colour_tags(fmt[1]):
        return None
    w, h = sorted((int(size[1]), int(size[2])), reverse=True)  # (long side, short side): rotation does not matter
    return "bt709" if w >= 1280 or h > 576 else "bt601"


SCALE_MATRIX = {"bt709": "bt709", "fcc": "fcc", "bt470bg": "bt470", "smpte170m": "smpte170m",
                "smpte240m": "smpte240m", "bt2020nc": "bt2020"}  # colorspace tag -> the scale filter's matrix name


@dataclass(frozen=True)
class Colour:
    """How an encoded video's YUV is to be read: matrix, primaries and transfer, as ffmpeg names them."""

    matrix: str = "bt709"
    primaries: str = "bt709"
    transfer: str = "bt709"


def stream_colour(stream_text: str) -> Colour:
    """The colour description an output should carry to look like this input stream: the stream's own tags where
    it has them (BT.2020 HLG or PQ from phones, SMPTE 170M from SD), BT.709 for what it leaves unknown."""
    fmt = pixel_format(stream_text)
    tags = _colour_tags(fmt[1]) if fmt and fmt[0].startswith(("yuv", "nv", "p0")) else None
    if tags is None:
        return Colour()
    matrix, primaries, transfer = (tags * 3)[:3] if len(tags) == 1 else (tags + ["unknown"] * 3)[:3]
    known = {k: v for k, v in (("primaries", primaries), ("transfer", transfer)) if v != "unknown"}
    return Colour(matrix if matrix in SCALE_MATRIX else "bt709", **known)


BT709 = Colour()


def video_args(opts: EncodeOptions, ext: str, width: int, height: int, colour: Colour = BT709) -> list[str]:
    """ffmpeg output options for the video stream; raises VideoError for choices that cannot work."""
    codec = opts.codec
    if codec not in encoders():
        raise VideoError(f"encoder {codec!r} is not in the bundled ffmpeg; use libx264, libx265, libvpx-vp9 or ffv1")
    if ext == ".webm" and codec not in WEBM_CODECS:
        raise VideoError(f"{codec} cannot be stored in .webm; use libvpx-vp9, or write .mp4 or .mkv")
    if ext == ".gif" and codec != "gif":
        raise VideoError(f"{codec} cannot be stored in .gif; leave --codec out for a .gif output")
    if codec == "gif" and ext != ".gif":
        raise VideoError("the gif encoder writes .gif files only; name the output .gif")
    if codec == "gif":
        return ["-c:v", "gif", "-vf", GIF_FILTER]
    if codec == "libx265" and min(width, height) < 64:  # this x265 build aborts on tiny pictures
        raise VideoError(f"libx265 cannot encode pictures as small as {width}x{height}; use libx264")
    pix_fmt = opts.pix_fmt
    if codec in RGB_PIX_FMT and pix_fmt == EncodeOptions.pix_fmt:
        pix_fmt = RGB_PIX_FMT[codec]
    if (width % 2 or height % 2) and codec in ("libx264", "libx265"):
        pix_fmt = re.sub(r"^(yuvj?4(20|22|11|10|40)p|nv12|nv21)", "yuv444p", pix_fmt)
    args = ["-c:v", codec, "-pix_fmt", pix_fmt]
    if pix_fmt.startswith("yuv"):  # convert with and tag the input's colour description (BT.709 by default), so
        # players neither guess the matrix nor show HDR as SDR; the tags go on the frames (setparams): this ffmpeg
        # takes them from there and ignores -color_primaries/-color_trc
        c = colour
        args += ["-vf", f"scale=out_color_matrix={SCALE_MATRIX[c.matrix]}:out_range=tv,setparams=colorspace="
                        f"{c.matrix}:color_primaries={c.primaries}:color_trc={c.transfer}:range=tv",
                 "-colorspace", c.matrix, "-color_primaries", c.primaries, "-color_trc", c.transfer,
                 "-color_range", "tv"]
    if codec in ("libx264", "libx265"):
        args += ["-crf", str(opts.crf), "-preset", opts.preset]
    if codec == "libx265":
        args += ["-x265-params", "log-level=error"] + (["-tag:v", "hvc1"] if ext in (".mp4", ".mov") else [])
    elif codec in ("libvpx-vp9", "libvpx"):
        speed = VP9_SPEED.get(opts.preset, 0)
        args += ["-crf", str(opts.crf), "-b:v", "0", "-deadline", "good", "-cpu-used", str(speed), "-row-mt", "1"]
    return args


def carry_args(ext: str, streams: list[Stream], warnings: list[str]) -> list[str]:
    """Map the audio and subtitles of input 1 into the output, copying codecs the container takes."""
    args: list[str] = []
    copyable = AUDIO_COPY.get(ext)  # None: any codec
    n_audio = n_subs = 0
    for s in streams:
        if s.kind == "Audio" and ext in NO_AUDIO:
            warnings.append(f"audio stream {s.index} cannot be stored in {ext}; left out")
        elif s.kind == "Audio":
            if copyable is None or s.codec in copyable:
                args += ["-map", f"1:{s.index}", f"-c:a:{n_audio}", "copy"]
            else:
                codec = AUDIO_FALLBACK.get(ext, "aac")
                args += ["-map", f"1:{s.index}", f"-c:a:{n_audio}", codec, f"-b:a:{n_audio}", "160k"]
            n_audio += 1
        elif s.kind == "Subtitle":
            target = SUB_CODEC.get(ext)
            if target == "copy" or (target and s.codec in TEXT_SUBS):
                args += ["-map", f"1:{s.index}", f"-c:s:{n_subs}", target]
                n_subs += 1
            else:
                warnings.append(f"subtitle stream {s.index} ({s.codec}) cannot be stored in {ext}; left out")
    return args


def read_exactly(stream: Any, buf: bytearray) -> int:
    view, got = memoryview(buf), 0
    while got < len(buf) and (n := stream.readinto(view[got:])):
        got += n
    return got


def is_interlaced(stream_text: str) -> bool:
    """Whether a video stream says its frames are interlaced (field order "top first" or "bottom first")."""
    fmt = pixel_format(stream_text)
    return fmt is not None and any(note in ("top first", "bottom first") for note in fmt[1])


def bit_depth(stream_text: str) -> int:
    """Bits per component of a video stream's pixel format: 10 for yuv420p10le or p010le, 8 for yuv420p."""
    fmt = pixel_format(stream_text)
    if fmt is None:
        return 8
    name = fmt[0]
    bits = re.search(r"(\d+)(?:le|be)$", name) or re.match(r"p0(1\d)", name)
    if re.match(r"(rgb|bgr)48|rgba64|bgra64", name):
        return 16
    return int(bits[1]) if bits and 8 < int(bits[1]) <= 16 else 8


DEEP_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9"})  # encode 10-bit YUV from 16-bit RGB frames


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
