"""The drop-frame protocol: how well framefill, and simple baselines, recreate frames left out of real footage.

The triplets and layouts: ``framefill.eval_data``; the metrics: ``framefill.eval_metrics``; the baselines:
``framefill.eval_baselines`` (their names are re-exported here).

Methods: ``framefill`` (the model through ``interpolate_pair``, as ``framefill interp A B MID`` runs it) and
the baselines of ``BASELINES``. Seconds are per in-between frame, array in and array out: the model is warmed
up once per frame size first; ``minterpolate`` includes starting ffmpeg, which is most of its cost on small
frames.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill.eval_baselines import BASELINES, MINTERPOLATE, blend, dis, minterpolate, minterpolate_frames, repeat
from framefill.eval_data import Clip, GivenTriplet, discover, triplet_starts
from framefill.eval_metrics import PSNR_MAX, SSIM_SIGMA, SSIM_WINDOW, Frame, ie, psnr, ssim
from framefill.frames import VideoError, natural_key, read_image, write_image
from framefill.interpolate import interpolate_pair
from framefill.schedule import is_windowed
from framefill.video import FrameSource
from framefill.windows import interpolate_middle

__all__ = [  # with the names of the modules split off, as they were importable before
    "BASELINES", "MINTERPOLATE", "PROTOCOL", "Clip", "EvalConfig", "EvalReport", "GivenTriplet", "TripletResult",
    "blend", "dis", "discover", "evaluate", "ie", "minterpolate", "minterpolate_frames", "panel", "psnr", "repeat",
    "ssim", "triplet_starts",
]

log = logging.getLogger(__name__)

MODEL = "framefill"  # the method name of the model in tables and JSON
GIVEN = "given"  # the group of Middlebury / Vimeo-90K triplets
ERROR_GAIN = 4  # the error panel of --save shows |framefill - truth| times this
PANEL_MAX_WIDTH = 1280  # wider frames are scaled down in the --save pictures (the scores use full frames)


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
