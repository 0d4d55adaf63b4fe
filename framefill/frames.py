"""Single images and folders of frames: read, write, list in natural order.

Every frame that crosses this module's boundary is an ``(H, W, 3)`` uint8 RGB array; OpenCV's BGR order
stays inside. Writes are atomic: a file or folder is built under a hidden temporary name beside its final
path and renamed onto it only when complete, so an interrupted run never leaves a half-written output.

``VideoError`` lives here because ``video.py`` builds on this module; import it from ``framefill.video``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# What folder discovery (train --data, eval --data) takes for a video file; ffmpeg reads them all.
VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                        ".wmv", ".flv", ".gif", ".y4m", ".3gp"})
if TYPE_CHECKING:
    from typing_extensions import Self

FRAME_PATTERN = "frame_{:06d}.png"  # names of the frames a FrameFolderWriter writes, counted from 1


class VideoError(Exception):
    """A video, image or folder could not be read or written.

    ``str()`` is one line for the user: what was wrong and what to do, then ffmpeg's own words if any.

    Args:
        message: what was wrong and what to do.
        detail: the relevant line of ffmpeg's stderr, if there is one.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        self.detail = detail
        text = f"{message} (ffmpeg: {detail[:200]})" if detail else message
        super().__init__(" ".join(text.split()))  # one line, whatever ffmpeg or a path contained


def is_image_file(path: Path) -> bool:
    """True if ``path`` has an image extension (``IMAGE_EXTS``, any case); the file itself is not read."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``, case-insensitively."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """The image files in ``folder`` (not hidden, not recursive), in natural order.

    Raises:
        VideoError: if the folder holds no image files.
    """
    files = [p for p in Path(folder).iterdir() if is_image_file(p) and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise VideoError(f"{folder} contains no image files ({', '.join(sorted(IMAGE_EXTS))}); check the folder")
    return sorted(files, key=lambda p: natural_key(p.name))


def check_frame(frame: np.ndarray, width: int, height: int, dtype: type = np.uint8) -> np.ndarray:
    """Return ``frame`` as a C-contiguous ``(height, width, 3)`` array of ``dtype`` (uint8; uint16 for deep video),
    or raise ValueError naming its shape."""
    if not isinstance(frame, np.ndarray) or frame.dtype != dtype or frame.shape != (height, width, 3):
        got = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected a ({height}, {width}, 3) {np.dtype(dtype).name} RGB frame, got {got}")
    return np.ascontiguousarray(frame)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (grey is expanded, alpha dropped, 16-bit scaled to 8).

    Raises:
        VideoError: if the file is missing or not a readable image.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np + imdecode: unlike cv2.imread, works with any path
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file; check the path") from None
    except OSError as e:
        raise VideoError(f"cannot read {path} ({e.strerror}); check the path") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise VideoError(f"{path} is not a readable image; check the file or export it again")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # (H, W, 3)


def transparency_note(path: Path) -> str | None:
    """A note for the user when ``path`` is an image with transparent pixels, which ``read_image`` drops; else None.
    (One more decode of that image: call it once per input, not per frame.)"""
    try:
        img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        return None  # no alpha
    opaque = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else 1.0  # (a float TIFF's alpha is 0..1)
    if float(img[..., 3].min()) >= opaque:
        return None  # every pixel opaque
    return (f"{Path(path).name} has transparent pixels; framefill interpolates the colour only and writes opaque "
            "frames (the alpha channel is dropped)")


def _encode(path: Path, img: np.ndarray) -> bytes:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    ok, buf = cv2.imencode(path.suffix.lower(), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VideoError(f"could not encode {path.name} as {path.suffix}; use .png or .jpg")
    return buf.tobytes()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def publish_mode(path: Path | str, directory: bool = False) -> None:
    """Give a temp file (or folder) from mkstemp/mkdtemp (0600/0700) the mode a normal create would have."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


def check_parent(path: Path) -> Path:
    """Return ``path``'s folder, or raise VideoError if it does not exist or is not a folder."""
    parent = Path(path).parent
    if not parent.exists():
        raise VideoError(f"output folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise VideoError(f"{parent} is not a folder; choose another output path")
    return parent


def unwritable(parent: Path, err: OSError) -> VideoError:
    """The error for a folder we could not create a file in."""
    return VideoError(f"cannot write to folder {parent} ({err.strerror}); choose another output folder")


def write_image(path: Path, img: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image atomically; the format follows the extension.

    Raises:
        VideoError: if the extension is not an image format or the folder is missing or unwritable.
    """
    path = Path(path)
    if not is_image_file(path):
        raise VideoError(f"{path.name} has no image extension; use one of {', '.join(sorted(IMAGE_EXTS))}")
    data = _encode(path, img)
    parent = check_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    except OSError as e:
        raise unwritable(parent, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CommitOnExit:
    """``with`` support for atomic writers: ``close()`` (commit) on a clean exit, ``abort()`` on an exception."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class FrameFolderWriter(CommitOnExit):
    """Writes ``frame_000001.png``, ``frame_000002.png``, ... into a folder, atomically.

    Frames go into a hidden temporary folder beside ``path``; ``close()`` renames it onto ``path``.
    An existing empty folder is always replaced; a non-empty one only with ``overwrite``, and only if it
    holds nothing but image files (so a mistyped ``--force`` cannot delete unrelated data).

    Args:
        path: the output folder.
        overwrite: replace an existing folder of frames.

    Raises:
        VideoError: if ``path`` is a file, exists without ``overwrite``, or its parent is missing or unwritable.
    """

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        parent = check_parent(self.path)
        if self.path.exists():
            if not self.path.is_dir():
                raise VideoError(f"{self.path} is a file, not a folder; choose a folder for the frames")
            entries = list(self.path.iterdir())
            if entries and not overwrite:
                raise VideoError(f"{self.path} exists and is not empty; use --force to overwrite")
            if any(not (is_image_file(p) and p.is_file()) for p in entries):
                raise VideoError(f"{self.path} holds files other than frames; choose a new or empty folder")
        try:
            self._tmp: Path | None = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.path.name}.", suffix=".partial"))
        except OSError as e:
            raise unwritable(parent, e) from None
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Write the next frame, an ``(H, W, 3)`` uint8 RGB array, as PNG."""
        self.write_named(FRAME_PATTERN.format(self.frames_written + 1), frame)

    def write_named(self, name: str, frame: np.ndarray) -> None:
        """Write an ``(H, W, 3)`` uint8 RGB array as ``name`` (a PNG file name: the pictures of ``interp --debug``)
        instead of the next ``frame_NNNNNN.png``."""
        if self._tmp is None:
            raise VideoError(f"{self.path} is already closed")
        try:
            (self._tmp / name).write_bytes(_encode(Path(name), frame))
        except OSError as e:
            raise VideoError(f"cannot write {name} into {self.path.parent} ({e.strerror}); free some space") from None
        self.frames_written += 1

    def close(self) -> None:
        """Move the finished folder onto ``path`` (replacing an old folder of frames)."""
        if self._tmp is None:
            return
        tmp, old = self._tmp, None
        try:
            if self.path.exists():
                old = self.path.with_name(f"{tmp.name}.old")
                os.rename(self.path, old)
            publish_mode(tmp, directory=True)
            os.rename(tmp, self.path)
        except BaseException:
            if old is not None and not self.path.exists():
                os.rename(old, self.path)  # put the previous output back
            self.abort()
            raise
        self._tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Delete the temporary folder; ``path`` is left as it was."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
