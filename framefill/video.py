"""Streaming video decode and encode through imageio-ffmpeg's bundled ffmpeg, plus folders of frames.

The public API of framefill's I/O: probing and reading here (``probe``, ``FrameSource``), and re-exported from
the modules that do the rest: writing in ``video_sink`` (``FrameSink``), background threads in ``background``
(``prefetch``, ``ThreadedSink``), the ffmpeg processes in ``ffmpeg``, their arguments in ``ffmpeg_args``
(``EncodeOptions``), what ffmpeg prints about a file in ``ffmpeg_banner`` (``parse_rate``, ``as_rate``), images and
frame folders in ``frames``.

Conventions:
    - Frames are ``(H, W, 3)`` uint8 RGB numpy arrays, one at a time: readers are generators and writers take
      one frame per call, so memory stays bounded however long the video.
    - Frame rates are exact ``Fraction``s. ffmpeg prints rates with two decimals, so a printed rate within
      rounding of N*1000/1001 (29.97, 23.98, 59.94, ...) is read as that NTSC rate, and the encoder is given
      ``-r NUM/DEN``, never a decimal. When the nominal rate (``tbr``) and the average rate disagree (variable
      frame rate), the average is used: it is the one that keeps the length of the video, and so the audio,
      in sync.
    - Sizes are kept exactly (no macro-block rounding). libx264/libx265 cannot store odd sizes with 4:2:0 or
      4:2:2 chroma, so for odd sizes those pix_fmts become their 4:4:4 twin (``yuv444p``), which browsers and
      QuickTime may not play; use even sizes, or ffv1 in .mkv, where that matters.
    - Audio and subtitles of ``audio_from`` are carried into the output: audio is copied when the container
      takes its codec, else re-encoded (aac; opus for .webm; mp3 for .avi); text subtitles become mov_text in
      .mp4/.mov and webvtt in .webm, .mkv copies any subtitle, and subtitles a container cannot hold are left
      out (noted in ``FrameSink.warnings``). ``-shortest`` is not used, so the video is never cut.
    - Damaged input: a reader yields every frame ffmpeg can decode and raises ``VideoError`` only when there is
      none; otherwise ffmpeg's complaints ("File ended prematurely", ...) land in ``FrameSource.warnings``.
    - Each ffmpeg child runs in its own session (a Ctrl-C reaches Python only, which then stops ffmpeg), its
      stderr is drained by a thread (a full pipe would block it), and it is killed and reaped in a ``finally``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import weakref
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from framefill.background import ThreadedSink, prefetch
from framefill.ffmpeg import decode, scan
from framefill.ffmpeg_args import EncodeOptions
from framefill.ffmpeg_banner import (
    BT709,
    Colour,
    as_rate,
    bit_depth,
    is_interlaced,
    parse_rate,
    pick_rate,
    stream_colour,
    timing_drift,
    untagged_matrix,
)
from framefill.frames import (
    IMAGE_EXTS,
    VideoError,
    is_image_file,
    list_images,
    read_image,
    transparency_note,
    write_image,
)
from framefill.video_sink import FrameSink

__all__ = [
    "IMAGE_EXTS", "EncodeOptions", "FrameSink", "FrameSource", "ThreadedSink", "VideoError", "VideoInfo",
    "as_rate", "is_image_file", "parse_rate", "prefetch", "probe", "read_image", "write_image",
]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a video (or folder of frames) holds; sizes are as decoded, after the rotation players apply."""

    width: int
    height: int
    fps: Fraction  # exact frame rate
    n_frames: int | None  # video packets (counted without decoding) or images; None when not counted
    duration: float | None  # seconds, from the container; None when it does not say
    has_audio: bool
    has_subtitles: bool
    codec: str  # ffmpeg's name of the video codec ("h264", "vp9", ...); "images" for a folder
    sar: Fraction = Fraction(1)  # pixel aspect ratio (width / height of a pixel) as decoded: not 1 for anamorphic
    # video (DVD, HDV), whose players stretch the picture; FrameSink stores it so the output displays the same
    matrix: str | None = None  # YUV matrix decoding assumes for a stream that names none (as players do: BT.709 for
    # HD, BT.601 for SD); None when the file names its own, or for images
    frame_times: tuple[Fraction, ...] | None = field(default=None, repr=False, compare=False)  # each frame's time,
    # seconds after the first (from the packets' timestamps); None when not read
    colour: Colour = BT709  # the colour description FrameSink gives the output (the input's tags; BT.709 where
    # it has none)
    interlaced: bool = False  # the stream says its frames are interlaced (DVD, broadcast): decoding deinterlaces
    bits: int = 8  # bits per component of the stream's pixel format (10 for yuv420p10le)

    @functools.cached_property
    def drift(self) -> float | None:
        """Seconds: how far the frame times stray from a constant ``fps`` (variable frame rate video: phones,
        screen recordings); None when the times were not read."""
        return timing_drift(self.frame_times, self.fps) if self.frame_times else None


def probe(path: Path, *, count_frames: bool = True) -> VideoInfo:
    """Describe a video file; nothing is decoded.

    Args:
        path: a video file.
        count_frames: count the video packets (a pass over the file that reads but does not decode); if False,
            ``n_frames`` is None.

    Raises:
        VideoError: if the file is missing, not a readable video, has no video stream or no frames.
    """
    path = Path(path)
    streams, header, n_frames, times = scan(path, count_frames)
    video = next((s for s in streams if s.kind == "Video" and "attached pic" not in s.text), None)
    size = re.search(r", (\d+)x(\d+)", video.text) if video else None
    if video is None or size is None:
        raise VideoError(f"{path} has no video stream; give a video file")
    if n_frames == 0:
        raise VideoError(f"{path} contains no video frames; give a video with at least one frame")
    width, height = int(size[1]), int(size[2])
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", video.text, flags=re.I)
    sar_match = re.search(r"SAR (\d+):(\d+)", video.text)
    sar = Fraction(int(sar_match[1]), int(sar_match[2])) if sar_match and int(sar_match[1]) and int(sar_match[2]) \
        else Fraction(1)  # 0:1 or none: unknown, taken as square
    if rotation and round(float(rotation[1])) % 180 == 90:  # ffmpeg turns such frames upright when decoding
        width, height, sar = height, width, 1 / sar
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", header)
    duration = int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3]) if dur else None
    has_audio = any(s.kind == "Audio" for s in streams)
    has_subtitles = any(s.kind == "Subtitle" for s in streams)
    fps = pick_rate(video.text)
    return VideoInfo(width, height, fps, n_frames, duration, has_audio, has_subtitles, video.codec, sar,
                     untagged_matrix(video.text), tuple(times) if times else None, stream_colour(video.text),
                     is_interlaced(video.text), bit_depth(video.text))


class FrameSource:
    """Frames of a video file or of a folder of images, streamed as ``(H, W, 3)`` uint8 RGB arrays.

    Each ``iter()`` starts a fresh pass; ``close()`` (or leaving the ``with`` block) stops any pass still
    running and its ffmpeg. Folder frames are read in natural order (``frame2`` before ``frame10``).

    Args:
        path: a video file or a folder of images.
        fps: the frame rate of a folder (default 30); for a video file it overrides the rate the file states.
        deep: a video file's frames as uint16 arrays (16 bits, for video of 10 or 12), not uint8.

    Raises:
        VideoError: on a missing, unreadable or empty input (also while iterating: a folder image of another
            size, a video of which no frame decodes).
    """

    def __init__(self, path: Path, fps: Fraction | None = None, deep: bool = False) -> None:
        self.path = Path(path)
        self.deep = deep and not self.path.is_dir()  # uint16 frames from video of more than 8 bits
        self.warnings: list[str] = []  # ffmpeg's complaints about a damaged file, from the last pass
        self._passes: weakref.WeakSet[Iterator[np.ndarray]] = weakref.WeakSet()
        fps = as_rate(fps) if fps is not None else None
        if self.path.is_dir():
            self._files: list[Path] | None = list_images(self.path)
            height, width = read_image(self._files[0]).shape[:2]
            rate = fps or Fraction(30)
            n = len(self._files)
            self.info = VideoInfo(width, height, rate, n, float(n / rate), False, False, "images")
            # first, middle and last image: a sequence whose alpha starts later (a fade out) is caught too, at the
            # cost of three decodes, not one per frame
            picks = dict.fromkeys((self._files[0], self._files[n // 2], self._files[-1]))
            if note := next(filter(None, map(transparency_note, picks)), None):
                self.warnings.append(note)  # folders are read without clearing it
        else:
            self._files = None
            self.info = probe(self.path)
            if fps is not None:  # retimed on purpose: the file's own timing no longer applies
                self.info = dataclasses.replace(self.info, fps=fps, frame_times=None)

    def __iter__(self) -> Iterator[np.ndarray]:
        frames = self._folder_frames(self._files) if self._files is not None else self._video_frames()
        self._passes.add(frames)
        return frames

    def _folder_frames(self, files: list[Path]) -> Iterator[np.ndarray]:
        w, h = self.info.width, self.info.height
        for path in files:
            frame = read_image(path)
            if frame.shape[:2] != (h, w):
                got = f"{frame.shape[1]}x{frame.shape[0]}"
                raise VideoError(f"{path.name} is {got} but the first frame is {w}x{h}; give frames of one size")
            yield frame  # (H, W, 3)

    def _video_frames(self) -> Iterator[np.ndarray]:
        self.warnings.clear()
        count = 0
        with closing(decode(self.path, self.info.width, self.info.height, self.warnings, self.info.matrix,
                            self.info.interlaced, self.deep)) as frames:
            for frame in frames:
                count += 1
                yield frame
        ffmpeg_said = self.warnings[-1] if self.warnings else None
        if self.info.n_frames is not None and count != self.info.n_frames:
            self.warnings.append(f"decoded {count} frames, the file holds {self.info.n_frames}")
        stated = self.info.n_frames or 0  # the packets the file holds
        if ffmpeg_said and self.info.duration:  # a cut file holds fewer packets than its header's duration states
            stated = max(stated, round(self.info.duration * self.info.fps))  # (only then: audio may outlast video)
        if count < stated - 1:  # (a duration rounded to hundredths of a second may state one frame more)
            log.warning("%s: only %d frames could be decoded where the file states about %d (a damaged or cut "
                        "file?); the output is made from those%s", self.path, count, stated,
                        f" (ffmpeg: {ffmpeg_said})" if ffmpeg_said else "")
        elif self.warnings:
            log.warning("%s: ffmpeg reported a problem while decoding it, so some frames may show damage: %s",
                        self.path, self.warnings[-1])

    def close(self) -> None:
        """Stop every pass that is still running (and its ffmpeg)."""
        for frames in list(self._passes):
            with suppress(ValueError):  # running on another thread: closing prefetch's generator stops it
                frames.close()  # type: ignore[attr-defined]

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_alike(paths: list[Path], fps: float, what: str) -> None:
    """A VideoError unless ``paths`` (videos to be joined into one stream: each a ``what``) all have the first's
    frame size and the rate ``fps`` (within 1%): another video put in place of one would be joined as it is."""
    infos = [probe(p, count_frames=False) for p in paths]
    size = (infos[0].width, infos[0].height)
    for path, info in zip(paths, infos, strict=True):
        if (info.width, info.height) != size or abs(float(info.fps) / fps - 1) > 0.01:
            raise VideoError(f"{what} {path} is {info.width}x{info.height} at {float(info.fps):.4g} fps, not "
                             f"{size[0]}x{size[1]} at {fps:.4g} fps as the others; delete it and make it again")
