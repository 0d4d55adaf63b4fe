"""What ``framefill eval`` scores on: clips (videos, frame folders) found under a path, the Middlebury and
Vimeo-90K triplets that come with their truth, and where the drop-frame triplets of a clip start.

Triplets. For a clip of ``n`` frames and a stride ``s``, a triplet is frames ``(i, i + s, i + 2s)``: the method
sees frames ``i`` and ``i + 2s`` and is scored on ``i + s`` (the truth). Up to ``max_triplets`` starts ``i`` per
clip and stride are spread evenly over ``0 .. n - 1 - 2s``, the first and last included. Layouts that come
with their own triplets are evaluated as they are, in the group ``given`` (``--stride`` does not apply):
Middlebury (a folder with ``frame10.png`` and ``frame11.png``, the truth ``frame10i11.png`` beside them or
in the matching folder of a sibling ``*gt*`` tree, as in ``other-data/NAME`` + ``other-gt-interp/NAME``) and
Vimeo-90K (a folder with ``im1.png``, ``im2.png``, ``im3.png``; ``im2`` is the truth). Any other folder with
at least 3 images is a clip of frames; video files are clips. A static triplet (three identical frames: a still
shot, or a frame repeated by the source) has nothing to interpolate, and every method scores perfectly on
it; such triplets are left out and counted in the report's warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framefill.frames import VIDEO_EXTS, is_image_file, natural_key


@dataclass(frozen=True)
class Clip:
    """A video file or a folder of frames, evaluated by drop-frame triplets."""

    path: Path
    name: str  # relative to the evaluated folder


@dataclass(frozen=True)
class GivenTriplet:
    """Two inputs and the truth between them, as a Middlebury or Vimeo-90K folder holds them."""

    name: str
    inputs: tuple[Path, Path]
    truth: Path
    layout: str  # "middlebury" or "vimeo"


def _images(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir()
            if is_image_file(p) and not p.name.startswith(".") and p.is_file()}


def _middlebury_truth(folder: Path) -> Path | None:
    """``frame10i11.png`` beside the inputs, or in ``../<*gt*>/<folder name>/`` (Middlebury's own split)."""
    here = folder / "frame10i11.png"
    if here.is_file():
        return here
    for tree in sorted(folder.parent.parent.iterdir(), key=lambda p: natural_key(p.name)):
        if "gt" in tree.name.lower() and (candidate := tree / folder.name / "frame10i11.png").is_file():
            return candidate
    return None


def _given(folder: Path, images: dict[str, Path], name: str) -> GivenTriplet | None:
    if {"im1.png", "im2.png", "im3.png"} <= images.keys() and len(images) == 3:
        return GivenTriplet(name, (images["im1.png"], images["im3.png"]), images["im2.png"], "vimeo")
    if {"frame10.png", "frame11.png"} <= images.keys() and (truth := _middlebury_truth(folder)):
        return GivenTriplet(name, (images["frame10.png"], images["frame11.png"]), truth, "middlebury")
    return None


def discover(path: Path) -> tuple[list[Clip], list[GivenTriplet]]:
    """The clips and given triplets under ``path`` (a video file or a folder, searched recursively).

    Raises:
        ValueError: if ``path`` holds none.
    """
    path = Path(path)
    if path.is_file():
        return [Clip(path, path.name)], []
    clips: list[Clip] = []
    given: list[GivenTriplet] = []
    folders, seen = [path], set()
    while folders:
        folder = folders.pop(0)
        if folder.resolve() in seen:  # a symbolic link back up the tree
            continue
        seen.add(folder.resolve())
        name = folder.relative_to(path).as_posix() if folder != path else folder.name
        entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
        images = _images(folder)
        if triplet := _given(folder, images, name):
            given.append(triplet)
            continue
        if len(images) >= 3:
            clips.append(Clip(folder, name))
        clips += [Clip(p, p.relative_to(path).as_posix()) for p in entries
                  if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
        folders += [p for p in entries if p.is_dir()]
    if not clips and not given:
        raise ValueError(f"{path} holds no videos, folders of 3 or more frames, or Middlebury / Vimeo-90K triplets; "
                         "give a video or a folder of them")
    return clips, given


def triplet_starts(n_frames: int, stride: int, limit: int) -> list[int]:
    """Up to ``limit`` starts ``i`` of triplets ``(i, i + stride, i + 2 stride)``, spread evenly over the clip."""
    if stride < 1 or limit < 1:
        raise ValueError(f"stride and limit must be at least 1, got {stride} and {limit}")
    last = n_frames - 1 - 2 * stride
    if last < 0:
        return []
    k = min(limit, last + 1)
    return sorted({round(j * last / (k - 1)) for j in range(k)}) if k > 1 else [last // 2]
