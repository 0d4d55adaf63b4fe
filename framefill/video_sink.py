"""``FrameSink``: frames into a video file (through ``framefill.ffmpeg.Encoder``) or a folder of PNGs
(``framefill.frames.FrameFolderWriter``), atomically: the output appears at its path only when complete.

Public through ``framefill.video``.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from framefill.ffmpeg import Encoder
from framefill.ffmpeg_args import EncodeOptions
from framefill.ffmpeg_banner import BT709, Colour, as_rate
from framefill.frames import CommitOnExit, FrameFolderWriter, VideoError, check_frame


def _is_folder_path(path: Path | str) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


class FrameSink(CommitOnExit):
    """Writes ``(H, W, 3)`` uint8 RGB frames to a video file or a folder of PNGs, atomically.

    The output appears at ``path`` only when ``close()`` succeeds; ``abort()``, an exception inside the
    ``with`` block, a Ctrl-C or a failed ``close()`` delete the temporary output and stop ffmpeg. A path that
    is an existing folder, ends in ``/`` or has no extension is a folder of frames (``frame_000001.png``, ...).

    Args:
        path: output video file or folder.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: exact output frame rate.
        options: video encoding options; default ``EncodeOptions.for_path(path)``. Ignored for folders.
        audio_from: a file whose audio and subtitles to carry into the output (video files only).
        overwrite: replace an existing output.
        source: the input being read, refused as the output like ``audio_from``.
        sar: the pixel aspect ratio to store (``VideoInfo.sar`` of the input), so that players stretch the output
            as they stretch the input; ignored for folders.
        colour: the colour description to encode with and store (``VideoInfo.colour`` of the input); ignored for
            folders and RGB codecs.
        deep: frames are uint16 arrays, encoded with 10 bits (yuv420p10le unless ``options`` name a format);
            video files with libx264, libx265 or libvpx-vp9 only.

    Raises:
        VideoError: if the output exists (without ``overwrite``) or is the input, if its folder is missing or
            unwritable, or if the container cannot hold the chosen codec.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: Fraction,
        options: EncodeOptions | None = None,
        audio_from: Path | None = None,
        overwrite: bool = False,
        source: Path | None = None,
        sar: Fraction = Fraction(1),
        colour: Colour = BT709,
        deep: bool = False,
    ) -> None:
        folder = _is_folder_path(path)
        if deep and folder:
            raise ValueError("deep (16-bit) frames go to video files only")
        self.dtype = np.uint16 if deep else np.uint8
        self.path = Path(path)
        if width < 1 or height < 1:
            raise ValueError(f"need a positive size, got {width}x{height}")
        for other in (audio_from, source):
            if other is not None and _same_file(self.path, Path(other)):
                raise VideoError(f"the output {self.path} is the input; choose another output path")
        self.width, self.height, self.fps = width, height, as_rate(fps)
        self.frames_written = 0
        self.warnings: list[str] = []  # what could not be carried over, ffmpeg's warnings
        self._closed = False
        if folder:
            self._impl: FrameFolderWriter | Encoder = FrameFolderWriter(self.path, overwrite=overwrite)
        else:
            if self.path.exists() and not overwrite:
                raise VideoError(f"{self.path} exists; use --force to overwrite")
            opts = options or EncodeOptions.for_path(self.path)
            self._impl = Encoder(self.path, (width, height), self.fps, opts, audio_from, self.warnings, Fraction(sar),
                                 colour, deep)

    def write(self, frame: np.ndarray) -> None:
        """Append a frame, an ``(H, W, 3)`` uint8 RGB array of the sink's size."""
        if self._closed:
            raise RuntimeError(f"FrameSink for {self.path} is closed")
        self._impl.write(check_frame(frame, self.width, self.height, self.dtype))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the output and move it onto ``path``; on failure delete it and raise VideoError."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.frames_written == 0:
                raise VideoError(f"no frames were written to {self.path}; the input gave none")
            self._impl.close()
        except BaseException:
            self._impl.abort()
            raise

    def abort(self) -> None:
        """Stop writing and delete the temporary output; ``path`` is left as it was."""
        self._closed = True
        self._impl.abort()
