"""The drop-frame protocol: how well framefill, and simple baselines, recreate frames left out of real footage.

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

Metrics, on ``(H, W, 3)`` uint8 RGB taken as values in [0, 255], one figure per triplet (means are over
triplets):
- PSNR: ``10 log10(255^2 / MSE)``, MSE over every pixel and channel; 100 dB for identical images (a mean
  over triplets stays finite).
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, computed
  per channel over the valid window positions (no padding, as the reference MATLAB code) and averaged.
- IE, interpolation error (Baker et al., "A Database and Evaluation Methodology for Optical Flow", 2011):
  the root mean square over pixels of the RGB difference, the L2 norm over the three channels at each pixel;
  that is ``sqrt(3)`` times the RMS over all values (for grey content, ``sqrt(3)`` times the one-channel IE).

Methods: ``framefill`` (the model through ``interpolate_pair``, as ``framefill interp A B MID`` runs it) and
the baselines of ``BASELINES``. Seconds are per in-between frame, array in and array out: the model is warmed
up once per frame size first; ``minterpolate`` includes starting ffmpeg, which is most of its cost on small
frames.
"""

from __future__ import annotations

import logging
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from framefill.ffmpeg import ffmpeg_exe, relevant, session
from framefill.frames import VIDEO_EXTS, VideoError, is_image_file, natural_key, read_image, write_image
from framefill.interpolate import interpolate_pair
from framefill.schedule import is_windowed
from framefill.video import FrameSource
from framefill.windows import interpolate_middle

log = logging.getLogger(__name__)

MODEL = "framefill"  # the method name of the model in tables and JSON
GIVEN = "given"  # the group of Middlebury / Vimeo-90K triplets
PSNR_MAX = 100.0  # dB, for equal images (as framefill.train.losses.psnr: MSE floored at 1e-10 of the peak)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
ERROR_GAIN = 4  # the error panel of --save shows |framefill - truth| times this
PANEL_MAX_WIDTH = 1280  # wider frames are scaled down in the --save pictures (the scores use full frames)

Frame = np.ndarray  # (H, W, 3) uint8 RGB


# --- metrics --------------------------------------------------------------------------------------------------


def _pair(pred: Frame, truth: Frame) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != truth.shape or pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) images of one shape, got {pred.shape} and {truth.shape}")
    return pred.astype(np.float64), truth.astype(np.float64)


def psnr(pred: Frame, truth: Frame) -> float:
    """PSNR in dB of two uint8 RGB images (peak 255), at most ``PSNR_MAX`` (equal images)."""
    a, b = _pair(pred, truth)
    mse = max(float(np.mean((a - b) ** 2)), 255.0**2 * 10 ** (-PSNR_MAX / 10))
    return 10 * float(np.log10(255.0**2 / mse))


def ie(pred: Frame, truth: Frame) -> float:
    """Middlebury interpolation error: RMS over pixels of the L2 norm of the RGB difference (0..255 scale)."""
    a, b = _pair(pred, truth)
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=2))))


def _gaussian(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()  # (size,)


def ssim(pred: Frame, truth: Frame) -> float:
    """Mean SSIM of two uint8 RGB images: per channel, 11x11 Gaussian window (sigma 1.5), valid positions only."""
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {pred.shape}")
    a, b = _pair(pred, truth)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian()
    row, col = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)
    scores = []
    for ch in range(3):  # one channel at a time: five float64 maps of a 4K frame are already 330 MB
        x, y = torch.from_numpy(a[..., ch]), torch.from_numpy(b[..., ch])
        maps = torch.stack([x, y, x * x, y * y, x * y]).unsqueeze(1)  # (5, 1, H, W)
        mu_x, mu_y, xx, yy, xy = F.conv2d(F.conv2d(maps, row), col)[:, 0]  # each (H - 10, W - 10)
        var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
        s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        scores.append(float(s.mean()))
    return float(np.mean(scores))


# --- baselines ------------------------------------------------------------------------------------------------


def repeat(img0: Frame, img1: Frame) -> Frame:
    """The first input, as a player that only repeats frames shows it."""
    return img0.copy()


def blend(img0: Frame, img1: Frame) -> Frame:
    """The exact mean of the two inputs, halves rounded up."""
    return ((img0.astype(np.uint16) + img1 + 1) // 2).astype(np.uint8)


def dis(img0: Frame, img1: Frame, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> Frame:
    """OpenCV DIS optical flow both ways; each input backward-warped to the middle by half its flow, averaged.

    ``calc(A, B)`` gives the flow ``f`` with ``A(p) ~ B(p + f(p))``. With motion ``v`` (``img1(p) = img0(p - v)``)
    the flow 0 -> 1 is ``v`` and 1 -> 0 is ``-v``, and the middle frame is ``img0(q - v/2) = img0(q + f10(q)/2)``
    and ``img1(q + v/2) = img1(q + f01(q)/2)``: each flow is read at the output pixel, which assumes the flow
    varies slowly.
    """
    flow = cv2.DISOpticalFlow_create(preset)
    g0, g1 = cv2.cvtColor(img0, cv2.COLOR_RGB2GRAY), cv2.cvtColor(img1, cv2.COLOR_RGB2GRAY)
    f01 = flow.calc(g0, g1, None)  # (H, W, 2) float32, channel 0 = dx
    f10 = flow.calc(g1, g0, None)
    h, w = g0.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def warp(img: Frame, f: np.ndarray) -> np.ndarray:
        return cv2.remap(img, xx + 0.5 * f[..., 0], yy + 0.5 * f[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    return blend(warp(img0, f10), warp(img1, f01))


MINTERPOLATE = "minterpolate=fps=2:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:scd=none"
MINTERPOLATE_MIN = 32  # the filter's smallest width and height


def minterpolate_frames(frames: list[Frame]) -> tuple[list[Frame], list[float]]:
    """Run ffmpeg's ``MINTERPOLATE`` on ``frames`` taken as 1 fps; every output frame and its time in seconds.

    ffmpeg converts to yuv444p for the filter and back, which rounds values by up to 2 levels.
    """
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-video_size", f"{w}x{h}", "-framerate", "1", "-i", "pipe:0", "-vf", f"{MINTERPOLATE},showinfo",
           "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]  # fmt: skip
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    done = subprocess.run(cmd, input=data, capture_output=True, **session())
    text = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise VideoError("ffmpeg's minterpolate failed", detail=relevant(text.splitlines()))
    out = np.frombuffer(done.stdout, dtype=np.uint8)
    times = [float(t) for t in re.findall(r"\bpts_time:\s*(-?[\d.]+)", text)]  # showinfo: one line per frame
    if out.size != len(times) * h * w * 3:
        raise VideoError(f"ffmpeg's minterpolate gave {out.size} bytes for {len(times)} frames of {w}x{h}")
    return list(out.reshape(-1, h, w, 3)), times


def minterpolate(img0: Frame, img1: Frame) -> Frame:
    """ffmpeg ``minterpolate`` (motion-compensated, bidirectional) at 2x: the output frame at t = 0.5.

    The filter emits a frame only once it holds the input after it, so a pair alone gives no output at all;
    the second input is sent twice (times 0, 1, 2 s) and the frame the filter stamps 0.5 s is taken, found by
    its time (``showinfo``), not by its position. The filter refuses frames under 32 pixels wide or high: such
    frames are padded (edge pixels repeated) and cropped back.
    """
    h, w = img0.shape[:2]
    pad = ((0, max(0, MINTERPOLATE_MIN - h)), (0, max(0, MINTERPOLATE_MIN - w)), (0, 0))
    frames, times = minterpolate_frames([np.pad(img, pad, mode="edge") for img in (img0, img1, img1)])
    middle = [f for f, t in zip(frames, times, strict=True) if abs(t - 0.5) < 1e-6]
    if len(middle) != 1:
        raise VideoError(f"ffmpeg's minterpolate gave frames at {times} s; expected exactly one at 0.5 s")
    return np.array(middle[0][:h, :w])  # a writable copy, unlike the frombuffer view


BASELINES: dict[str, Callable[[Frame, Frame], Frame]] = {
    "repeat": repeat, "blend": blend, "dis": dis, "minterpolate": minterpolate,
}  # fmt: skip

PROTOCOL = {  # what the figures mean, for the record (framefill eval --json)
    "triplets": "clips: frames (i, i+S, i+2S), inputs i and i+2S, truth i+S, starts spread evenly; "
                "given: Middlebury frame10/frame11 -> frame10i11, Vimeo-90K im1/im3 -> im2; static triplets left out",
    "psnr": f"10 log10(255^2 / MSE) over all pixels and channels of 8-bit RGB, at most {PSNR_MAX:g} dB",
    "ssim": f"Wang et al. 2004, {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window sigma {SSIM_SIGMA}, K1 0.01, K2 0.03, "
            "L 255, per RGB channel over valid window positions, averaged",
    "ie": "Middlebury interpolation error: RMS over pixels of the L2 norm of the RGB difference (0..255)",
    "seconds": "per in-between frame, arrays in and out; the model warmed up once per frame size",
    "framefill": "framefill.interpolate.interpolate_pair at t = 0.5 (as framefill interp A B MID)",
    "repeat": "the first input",
    "blend": "mean of the two inputs, halves rounded up",
    "dis": "OpenCV DIS optical flow (preset medium) both ways, each input backward-warped by half its flow, averaged",
    "minterpolate": f"ffmpeg {MINTERPOLATE} on the inputs at 1 fps (the second sent twice), the frame at 0.5 s",
}


# --- discovery ------------------------------------------------------------------------------------------------


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


# --- running --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    strides: tuple[int, ...] = (1, 2)  # drop-frame strides for clips
    max_triplets: int = 10  # per clip and stride
    baselines: tuple[str, ...] = tuple(BASELINES)  # compared with the model, in this order
    save: Path | None = None  # folder for one side-by-side PNG per triplet

    def __post_init__(self) -> None:
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        if self.max_triplets < 1:
            raise ValueError(f"max_triplets must be at least 1, got {self.max_triplets}")
        if unknown := [b for b in self.baselines if b not in BASELINES]:
            raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")


@dataclass
class TripletResult:
    clip: str
    group: str  # "stride S" or "given"
    stride: int | None  # None for given triplets
    frames: list[int] | list[str]  # input 0, truth, input 1: frame indices of a clip, or file paths
    width: int
    height: int
    scores: dict[str, dict[str, float]]  # method -> psnr, ssim, ie, seconds


@dataclass
class EvalReport:
    methods: list[str]
    triplets: list[TripletResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # clips or strides skipped, and why

    def groups(self) -> list[str]:
        found = {t.group for t in self.triplets}
        strides = sorted({t.stride for t in self.triplets if t.stride is not None})
        return [f"stride {s}" for s in strides] + ([GIVEN] if GIVEN in found else [])

    def summary(self, triplets: list[TripletResult] | None = None) -> dict[str, dict[str, float]]:
        """Per method: n, mean PSNR / SSIM / IE, median and mean seconds per frame over ``triplets`` (default all)."""
        rows = self.triplets if triplets is None else triplets
        out = {}
        for m in self.methods:
            got = [t.scores[m] for t in rows if m in t.scores]
            if got:
                out[m] = {"n": len(got), **{k: statistics.fmean(s[k] for s in got) for k in ("psnr", "ssim", "ie")},
                          "sec_median": statistics.median(s["seconds"] for s in got),
                          "sec_mean": statistics.fmean(s["seconds"] for s in got)}
        return out

    def to_dict(self) -> dict:
        """Every figure: per triplet, per group (per method and per clip) and overall."""
        groups = {}
        for g in self.groups():
            rows = [t for t in self.triplets if t.group == g]
            clips = sorted({t.clip for t in rows}, key=natural_key)
            groups[g] = {"methods": self.summary(rows),
                         "clips": {c: self.summary([t for t in rows if t.clip == c]) for c in clips}}
        return {"methods": self.methods, "groups": groups, "overall": self.summary(),
                "triplets": [vars(t) for t in self.triplets], "warnings": self.warnings}


Progress = Callable[[int, int], None]  # (triplets done, triplets in all)


class _Evaluator:
    def __init__(self, methods: dict[str, Callable[..., Frame]], config: EvalConfig,
                 report: EvalReport, total: int, on_progress: Progress | None, windowed: bool = False) -> None:
        self.methods, self.config, self.report = methods, config, report
        self.total, self.on_progress = total, on_progress
        self.warm: set[tuple[int, ...]] = set()
        self.windowed = windowed  # the model takes the outer frames too (a four-frame model)
        self.done = 0  # triplets taken, static ones included
        self.static = 0  # triplets of three identical frames, left out

    def __call__(self, clip: str, group: str, stride: int | None, frames: list, a: Frame, truth: Frame,
                 b: Frame, outer: tuple[Frame | None, Frame | None] = (None, None)) -> None:
        self._score(clip, group, stride, frames, a, truth, b, outer)
        self.done += 1
        if self.on_progress:
            self.on_progress(self.done, self.total)

    def _score(self, clip: str, group: str, stride: int | None, frames: list, a: Frame, truth: Frame,
               b: Frame, outer: tuple[Frame | None, Frame | None]) -> None:
        if a.shape != b.shape or a.shape != truth.shape:
            self.report.warnings.append(f"{clip}: frames {frames} are not all one size; skipped")
            return
        if np.array_equal(a, truth) and np.array_equal(b, truth):
            self.static += 1
            return
        if a.shape not in self.warm and MODEL in self.methods:  # first call: allocation, kernel selection
            self.methods[MODEL](a, b)
            self.warm.add(a.shape)
        scores, made = {}, {}
        for name, method in self.methods.items():
            start = time.perf_counter()
            out = method(a, b, *outer) if name == MODEL and self.windowed else method(a, b)  # numpy: device done
            seconds = time.perf_counter() - start
            scores[name] = {"psnr": psnr(out, truth), "ssim": ssim(out, truth), "ie": ie(out, truth),
                            "seconds": seconds}
            made[name] = out
        self.report.triplets.append(TripletResult(clip, group, stride, frames, a.shape[1], a.shape[0], scores))
        if self.config.save is not None and MODEL in made:
            tag = f"{clip}_s{stride}_f{frames[0]:06d}" if stride else clip
            name = re.sub(r"[^\w.-]+", "_", tag).strip("_") + ".png"
            write_image(self.config.save / name, panel(a, b, made[MODEL], truth, frames, scores[MODEL]["psnr"]))


def _plan(clips: list[Clip], config: EvalConfig, report: EvalReport
          ) -> list[tuple[Clip, FrameSource, list, int]]:
    """Open every clip and choose its triplets; clips that cannot be read or are too short become warnings."""
    plans = []
    for clip in clips:
        source = None
        try:
            source = FrameSource(clip.path)
            n = source.info.n_frames if source.info.n_frames is not None else sum(1 for _ in source)
        except VideoError as e:
            report.warnings.append(f"{clip.name}: {e}; skipped")
            if source is not None:
                source.close()
            continue
        chosen = []
        for s in config.strides:
            starts = triplet_starts(n, s, config.max_triplets)
            if not starts:
                report.warnings.append(f"{clip.name}: {n} frames, too few for stride {s} (needs {2 * s + 1})")
            even = [i for i in starts if _halfway(source.info.frame_times, i, s)]
            if len(even) < len(starts):
                report.warnings.append(f"{clip.name}: {len(starts) - len(even)} stride-{s} triplets skipped: the "
                                       "middle frame is not halfway in time (variable frame rate)")
            chosen += [(s, i) for i in even]
        if chosen:
            plans.append((clip, source, chosen, n))
        else:
            source.close()
    return plans


UNEVEN_TRIPLET = 0.05  # how far from t = 0.5 (in the triplet's span) the middle frame's timestamp may be


def _halfway(times: tuple[Fraction, ...] | None, i: int, s: int) -> bool:
    """Whether frame ``i + s`` lies halfway in time between frames ``i`` and ``i + 2s`` (True when unknown)."""
    if times is None or i + 2 * s >= len(times):
        return True
    return abs((times[i + s] - times[i]) / (times[i + 2 * s] - times[i]) - Fraction(1, 2)) <= UNEVEN_TRIPLET


def _run_clip(clip: Clip, source: FrameSource, chosen: list[tuple[int, int]], run: _Evaluator, n: int) -> None:
    """Decode ``clip`` once, keeping only the frames a triplet still needs, and score each triplet on its way.

    For a four-frame model a triplet ``(i, i + s, i + 2s)`` also reads the outer frames ``i - 2s`` and ``i + 4s``
    (where the clip has them): the window the model would see in a video at that spacing."""
    def needs(s: int, i: int) -> list[int]:
        inner = [i, i + s, i + 2 * s]
        return inner + [j for j in (i - 2 * s, i + 4 * s) if 0 <= j < n] if run.windowed else inner

    uses: dict[int, int] = {}
    for s, i in chosen:
        for j in needs(s, i):
            uses[j] = uses.get(j, 0) + 1
    kept: dict[int, Frame] = {}
    pending = sorted(chosen, key=lambda c: (max(needs(*c)), c))  # by the last frame each needs
    with source:
        for index, frame in enumerate(source):
            if index in uses:
                kept[index] = frame
            while pending and max(needs(*pending[0])) == index:
                s, i = pending.pop(0)
                outer = (kept.get(i - 2 * s), kept.get(i + 4 * s)) if run.windowed else (None, None)
                run(clip.name, f"stride {s}", s, [i, i + s, i + 2 * s], kept[i], kept[i + s], kept[i + 2 * s], outer)
                for j in needs(s, i):
                    uses[j] -= 1
                    if not uses[j]:
                        del kept[j]
            if not pending:
                return
    run.report.warnings.append(f"{clip.name}: decoded fewer frames than it holds; {len(pending)} triplets skipped")


def evaluate(path: Path, net: torch.nn.Module | None, config: EvalConfig, *, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, on_progress: Progress | None = None) -> EvalReport:
    """Score the model (unless ``net`` is None) and ``config.baselines`` on the triplets under ``path``.

    Raises:
        ValueError: if ``path`` holds nothing to evaluate, or no clip is long enough for the strides.
    """
    clips, given = discover(path)
    methods: dict[str, Callable[..., Frame]] = {}
    windowed = net is not None and is_windowed(net)
    if windowed:  # the outer frames come from the clip (see _run_clip)
        methods[MODEL] = lambda a, b, before=None, after=None: interpolate_middle(
            a, b, net, before=before, after=after, device=device, dtype=dtype)
    elif net is not None:
        methods[MODEL] = lambda a, b: interpolate_pair(a, b, net, device=device, dtype=dtype)
    methods.update({b: BASELINES[b] for b in config.baselines})
    if not methods:
        raise ValueError("nothing to evaluate: no model and no baselines")
    report = EvalReport(list(methods))
    plans = _plan(clips, config, report)
    total = sum(len(chosen) for _, _, chosen, _ in plans) + len(given)
    if total == 0:
        raise ValueError(f"no triplets in {path}: {report.warnings[0] if report.warnings else 'no usable clips'}")
    if config.save is not None:
        config.save.mkdir(parents=True, exist_ok=True)
    run = _Evaluator(methods, config, report, total, on_progress, windowed)
    if on_progress:
        on_progress(0, total)
    try:
        for clip, source, chosen, n in plans:
            try:
                _run_clip(clip, source, chosen, run, n)
            except VideoError as e:  # a damaged file, a folder of frames of two sizes: the other clips go on
                report.warnings.append(f"{clip.name}: {e}; its remaining triplets skipped")
    finally:
        for _, source, _, _ in plans:
            source.close()
    for t in given:
        try:
            images = [read_image(t.inputs[0]), read_image(t.truth), read_image(t.inputs[1])]
        except VideoError as e:
            report.warnings.append(f"{t.name}: {e}; skipped")
            continue
        run(t.name, GIVEN, None, [str(t.inputs[0]), str(t.truth), str(t.inputs[1])], *images)
    if run.static:
        report.warnings.append(f"{run.static} static triplets (three identical frames) left out")
    if not report.triplets:
        raise ValueError(f"no triplet of {path} could be evaluated: {report.warnings[-1]}")
    return report


# --- pictures -------------------------------------------------------------------------------------------------


def panel(a: Frame, b: Frame, pred: Frame, truth: Frame, frames: list, score: float) -> Frame:
    """Input 0, input 1, framefill's frame, the truth and ``|pred - truth| * ERROR_GAIN``, side by side, labelled."""
    err = np.abs(pred.astype(np.int16) - truth).mean(axis=2) * ERROR_GAIN  # (H, W)
    heat = cv2.cvtColor(cv2.applyColorMap(np.clip(err, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO),
                        cv2.COLOR_BGR2RGB)
    names = [f"frame {f}" if isinstance(f, int) else Path(f).name for f in frames]
    labels = [f"{names[0]} (input)", f"{names[2]} (input)", f"framefill {score:.2f} dB", f"{names[1]} (truth)",
              f"|error| x{ERROR_GAIN}"]
    h, w = a.shape[:2]
    scale = min(1.0, PANEL_MAX_WIDTH / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    font = 0.4 if size[0] < 400 else 0.8
    strip = round(30 * font) + 8
    tiles = []
    for img, label in zip([a, b, pred, truth, heat], labels, strict=True):
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA) if scale < 1 else img
        tile = np.zeros((size[1] + strip, size[0], 3), np.uint8)
        tile[strip:] = img
        cv2.putText(tile, label, (4, strip - 6), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)  # (strip + h, 5 w, 3)
