"""What ``ffmpeg -i`` prints about a file, read: its streams, rates, colour description, scan and bit depth.

Only the binary that imageio-ffmpeg ships is used: there may be no system ffmpeg or ffprobe, so metadata is read
from the banner ``ffmpeg -i`` prints (``framefill.ffmpeg.scan`` runs it). That banner gives rates with two
decimals; ``parse_rate`` recovers exact ones. Everything here is text in, values out: no process is started.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction

log = logging.getLogger(__name__)

STREAM_LINE = re.compile(r"^\s*Stream #0:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): ([\w-]+)")



@dataclass(frozen=True)
class Stream:
    index: int  # ffmpeg's stream index in its file
    kind: str  # Video, Audio, Subtitle, Data or Attachment
    codec: str
    text: str  # the stream's line and its indented lines (side data, metadata)


def parse_header(text: str) -> tuple[list[Stream], str] | None:
    """The streams and the header text (``Input #0`` up to the output's part) of ``ffmpeg -i``'s stderr; None when
    it has no ``Input #0`` (ffmpeg could not read the file)."""
    start = text.find("Input #0")
    if start < 0:
        return None
    header = re.split(r"^(?:Output #|Stream mapping:)", text[start:], maxsplit=1, flags=re.M)[0]
    streams: list[Stream] = []
    for line in header.splitlines():
        if m := STREAM_LINE.match(line):
            streams.append(Stream(int(m[1]), m[2], m[3], line))
        elif streams and line.startswith("    "):
            streams[-1] = dataclasses.replace(streams[-1], text=streams[-1].text + "\n" + line)
    return streams, header


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


def as_rate(value: Fraction | int | float | str) -> Fraction:
    """A positive exact frame rate from a Fraction, int, or a float or string read like ffmpeg's (29.97 = NTSC).

    Raises:
        ValueError: if ``value`` is not a positive rate.
    """
    rate = parse_rate(str(value)) if isinstance(value, float | str) else Fraction(value)
    if rate <= 0:
        raise ValueError(f"a frame rate must be positive, got {value}")
    return rate


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


NO_PTS = -(2**63)  # AV_NOPTS_VALUE, as framecrc prints a missing timestamp


def packet_times(framecrc: str) -> tuple[int, list[Fraction] | None]:
    """The packet count, and the presentation times (seconds after the first, exact, sorted) in ffmpeg's framecrc
    output for one stream; None for the times when a packet has no timestamp or two share one.

    Packets flagged to be discarded (``F=`` with bit 4: those before the start of an MP4 edit list, as a trim by
    stream copy leaves them, which the decoder drops) are not the video's frames and are left out."""
    lines = [line.split(",") for line in framecrc.splitlines() if line.strip() and not line.startswith("#")]
    lines = [fields for fields in lines if not _discarded(fields)]
    tb = re.search(r"^#tb \d+: (\d+)/(\d+)", framecrc, flags=re.M)
    try:
        pts = sorted(int(fields[2]) for fields in lines)
    except (IndexError, ValueError):
        return len(lines), None
    if tb is None or not pts or pts[0] == NO_PTS or len(set(pts)) < len(pts):
        return len(lines), None
    unit = Fraction(int(tb[1]), int(tb[2]))
    return len(lines), [(p - pts[0]) * unit for p in pts]


def _discarded(fields: list[str]) -> bool:
    """Whether a framecrc line's packet carries the discard flag (``F=0x4``)."""
    flags = next((f.strip()[2:] for f in fields[6:] if f.strip().startswith("F=")), None)
    try:
        return flags is not None and bool(int(flags, 16) & 0x4)
    except ValueError:
        return False


def timing_drift(times: Sequence[Fraction], fps: Fraction) -> float:
    """The largest distance (seconds) between a frame's own time (``times``: seconds after the first frame) and
    where a constant ``fps`` puts it (frame i at i / fps): how far a video of variable frame rate strays when
    treated as constant."""
    return float(max((abs(t - i / fps) for i, t in enumerate(times)), default=Fraction(0)))


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


def comment(header: str) -> str | None:
    """The file's own ``comment`` tag (the first in the header: the container's, before its streams'), or None."""
    found = re.search(r"^\s+comment\s*:\s*(.*?)\s*$", header, re.M | re.I)
    return found[1] if found else None
