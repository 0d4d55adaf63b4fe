"""Training data: clips from any folder of videos or frame folders, turned into drop-frame triplets (or the
four-frame windows of ``convlstm``).

A clip is decoded once into RAM (uint8, optionally downscaled) and cached on disk as ``.npy`` so a
resumed run starts at once. Triplets ``(i, i + s, i + 2s)`` are sampled on the fly at the strides
given (larger stride = larger motion); the middle frame is the ground truth at t = 0.5. With
``arbitrary_time`` (film only) the truth is any frame between the two inputs instead: inputs ``i`` and
``i + 2s``, truth ``i + j`` for ``j`` drawn uniformly from ``1 .. 2s - 1``, at ``t = j / 2s`` (stride 1:
1/2; stride 2: 1/4, 1/2, 3/4; stride 3: sixths). For a four-frame
model (``context=4``) a sample is the window ``(i, i + 2s, i + 4s, i + 6s)`` with the truth ``i + 3s``, the
frame halfway between the middle two; with probability ``edge_prob`` each, an outer frame is replaced by a copy
of the nearer middle one, as the scheduler does at the ends of a video and next to scene cuts.

Skips (decided on small grey thumbnails, per consecutive pair, before training starts):
- static triplets: the two inputs differ by less than ``static_mad`` (mean abs difference, 0-1 scale);
- duplicated frames inside the triplet (a pair differing by less than ``dup_mad``): the middle frame
  would not be at t = 0.5 (nor frame ``i + j`` at ``j / 2s``);
- scene cuts: any consecutive pair inside the triplet whose difference is above ``cut_mad`` and at
  least ``cut_ratio`` times the median difference of the clip.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill.frames import IMAGE_EXTS, VIDEO_EXTS, natural_key
from framefill.video import FrameSource

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DataConfig:
    crop: int = 192  # training crop side (pixels)
    strides: tuple[int, ...] = (1, 2, 3)  # temporal strides sampled uniformly
    max_side: int = 1280  # clips are downscaled so their longer side is at most this
    half_scale_prob: float = 0.5  # chance a triplet is taken from the 2x-downscaled copy of its clip
    max_frames: int = 400  # frames kept per clip (a contiguous stretch) to bound RAM
    static_mad: float = 0.004  # inputs closer than this (mean abs diff, 0-1): static, skipped
    dup_mad: float = 0.0015  # consecutive frames closer than this: duplicates
    cut_mad: float = 0.12  # consecutive frames further apart than this (and cut_ratio x median): a cut
    cut_ratio: float = 6.0
    flip_prob: float = 0.5
    rot90_prob: float = 0.25
    reverse_prob: float = 0.5
    jitter: float = 0.1  # brightness/contrast jitter amplitude (same for the three frames)
    edge_prob: float = 0.1  # four-frame windows: chance that I0 (and, apart, I3) is a copy of I1 (of I2)
    motion_crops: int = 1  # crop positions drawn per sample; the one where the pair differs most is kept
    arbitrary_time: bool = False  # triplets: truth at any frame between the inputs (t = j / 2s), not the middle


VIMEO_LISTS = ("tri_trainlist.txt", "sep_trainlist.txt")  # Vimeo-90K's training splits (triplet, septuplet)


def find_clips(root: Path) -> list[Path]:
    """Video files and frame folders (3+ images) under ``root``, sorted.

    A Vimeo-90K root (``sequences/`` beside ``tri_trainlist.txt`` or ``sep_trainlist.txt``) gives the sequences
    its training list names, so that its test split stays out of training; each sequence folder (im1.png ..
    im3.png or im7.png) is a clip.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    for name in VIMEO_LISTS:
        if (root / name).is_file() and (root / "sequences").is_dir():
            listed = [root / "sequences" / entry for entry in (root / name).read_text().split()]
            return [p for p in listed if p.is_dir()]
    clips = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    for d in sorted([root, *[p for p in root.rglob("*") if p.is_dir()]]):
        if sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS) >= 3:
            clips.append(d)
    return clips


def _decode(path: Path, max_frames: int) -> np.ndarray:
    """All frames (up to ``max_frames``) of a video file or frame folder, ``(T, H, W, 3)`` uint8 RGB."""
    if path.is_dir():
        files = [f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")]
        files = sorted(files, key=lambda f: natural_key(f.name))[:max_frames]  # frame2 before frame10
        return np.stack([cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files])
    frames = []  # decoded as interp decodes them: upright, in the colours players show
    with FrameSource(path) as source:
        for frame in source:
            frames.append(frame)
            if len(frames) >= max_frames:
                break
    return np.stack(frames)


def _resize(frames: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frames
    t, h, w, _ = frames.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def load_clip(path: Path, cfg: DataConfig, cache_dir: Path | None) -> np.ndarray:
    key = hashlib.sha1(f"{Path(path).resolve()}|{cfg.max_side}|{cfg.max_frames}".encode()).hexdigest()[:16]
    cached = cache_dir / f"{key}.npy" if cache_dir else None
    if cached is not None and cached.exists():
        return np.load(cached, mmap_mode="r")  # read-only and paged in on demand: samples copy their crops
    frames = _decode(Path(path), cfg.max_frames)
    h, w = frames.shape[1:3]
    frames = _resize(frames, min(1.0, cfg.max_side / max(h, w)))
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Atomic: a run killed here leaves no truncated cache. A temporary file per process: torchrun ranks that
        # do not see rank 0's cache (other nodes) may all write the same file at once.
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
        with open(tmp, "wb") as fh:
            np.save(fh, frames)
        os.replace(tmp, cached)
        return np.load(cached, mmap_mode="r")  # as a rerun reads it: a first run holds no clip in its own memory
    return frames


def pair_differences(frames: np.ndarray) -> np.ndarray:
    """Mean abs difference (0-1) of consecutive frames on 64-px grey thumbnails, ``(T - 1,)``."""
    t, h, w, _ = frames.shape
    size = (64, max(1, round(64 * h / w)))
    thumbs = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
                       for f in frames]).astype(np.float32) / 255
    return np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))


def valid_triplets(frames: np.ndarray, stride: int, cfg: DataConfig, span: int = 2) -> np.ndarray:
    """Start indices ``i`` whose frames ``i .. i + span * stride`` pass the skips (``span`` 2: a triplet
    ``(i, i + stride, i + 2 stride)``; 6: a four-frame window at spacing ``2 stride`` with its middle frame).

    The static test compares the pair being interpolated (the middle two frames of a window)."""
    d = pair_differences(frames)
    n = len(frames)
    if n < span * stride + 1:
        return np.zeros(0, dtype=np.int64)
    med = float(np.median(d)) if len(d) else 0.0
    is_dup = d < cfg.dup_mad
    is_cut = (d > cfg.cut_mad) & (d > cfg.cut_ratio * max(med, 1e-3))
    starts = []
    first = (span - 2) // 2 * stride  # offset of the pair's first frame in the window
    for i in range(n - span * stride):
        seg = slice(i, i + span * stride)
        if is_cut[seg].any() or is_dup[seg].any():
            continue
        if d[i + first:i + first + 2 * stride].sum() < cfg.static_mad:  # a cheap lower bound before the exact check
            continue
        starts.append(i)
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts):  # exact static check: the two inputs themselves
        small = [cv2.resize(f, (64, 36)).astype(np.float32) / 255 for f in frames]
        keep = [np.abs(small[i + first] - small[i + first + 2 * stride]).mean() >= cfg.static_mad for i in starts]
        starts = starts[np.asarray(keep, dtype=bool)]
    return starts


def window_span(context: int) -> int:
    """How many stride steps a sample covers: 2 for a triplet, 6 for a four-frame window."""
    return max(sample_indices(0, 1, context))


def sample_indices(i: int, stride: int, context: int, j: int | None = None) -> list[int]:
    """Frame indices of the sample starting at ``i``: the inputs in time order, then the truth (for a triplet:
    frame ``i + j``, default the middle one, ``j = stride``)."""
    if context == 2:
        return [i, i + 2 * stride, i + (stride if j is None else j)]
    if context == 4:
        return [i, i + 2 * stride, i + 4 * stride, i + 6 * stride, i + 3 * stride]
    raise ValueError(f"context must be 2 or 4 frames, got {context}")


class Samples:
    """A training source: ``draw(rng)`` makes every random choice of a sample and ``build(draw)`` does its pixel
    work (so that a data-parallel rank can draw the whole global batch and build only its share);
    ``sample_timed`` is the two in a row: the frames and the truth's time; ``sample`` the frames alone."""

    def draw(self, rng: np.random.Generator, *args: object) -> object:  # each source has its own draw type
        raise NotImplementedError

    def build(self, d: object) -> tuple[torch.Tensor, float]:
        raise NotImplementedError

    def motion(self, d: object) -> torch.Tensor | None:
        """The exact motion of the truth's pixels into each input, ``(4, h, w)`` (see ``synth.exact_motion``), where
        the source knows it (rendered scenes); None where it does not (real clips)."""
        return None

    def sample_timed(self, rng: np.random.Generator, *args: object) -> tuple[torch.Tensor, float]:
        return self.build(self.draw(rng, *args))

    def sample(self, rng: np.random.Generator, *args: object) -> torch.Tensor:
        return self.sample_timed(rng, *args)[0]


class TripletDataset(Samples):
    """Random drop-frame triplets from a set of clips, as float tensors ``(3, 3, crop, crop)``.

    ``sample(rng)`` returns ``(frame0, frame1, middle)`` stacked on dim 0, each ``(3, crop, crop)`` in
    [0, 1]; with ``context=4``, ``(I0, I1, I2, I3, middle of I1 and I2)``, ``(5, 3, crop, crop)``. Clips smaller
    than the crop at a scale are not sampled at that scale. ``sample_timed(rng)`` also returns the truth's time
    ``t`` between the two frames around the gap: 0.5, or with ``cfg.arbitrary_time`` any ``j / 2s``.
    """

    def __init__(self, root: Path, cfg: DataConfig, cache_dir: Path | None = None, context: int = 2) -> None:
        self.cfg, self.context = cfg, context
        span = window_span(context)  # also checks the context
        if cfg.arbitrary_time and context != 2:
            raise ValueError("arbitrary-time samples are triplets (two inputs and a frame between them); "
                             "four-frame windows are trained at t = 0.5 only")
        self.clips: list[dict] = []
        paths = find_clips(root)
        if not paths:
            raise ValueError(f"no videos or frame folders found under {root}")
        for p in paths:
            try:
                full = load_clip(p, cfg, cache_dir)
            except Exception as e:  # a clip ffmpeg cannot read is skipped, not fatal
                log.warning("skipping %s: %s", p, e)
                continue
            for scale, frames in ((1, full), (2, _resize(full, 0.5))):
                if min(frames.shape[1:3]) < cfg.crop:
                    continue
                for s in cfg.strides:
                    starts = valid_triplets(frames, s, cfg, span)
                    if len(starts):
                        self.clips.append({"path": str(p), "scale": scale, "stride": s, "frames": frames,
                                           "starts": starts})
        if not self.clips:
            need = span * min(cfg.strides) + 1  # frames a sample spans at the smallest stride
            raise ValueError(f"no usable {'triplets' if context == 2 else 'windows'} under {root}: its clips are "
                             f"smaller than the crop ({cfg.crop} px), shorter than {need} frames, or static")

    def __len__(self) -> int:
        return sum(len(c["starts"]) for c in self.clips)

    def summary(self) -> dict[str, int]:
        return {"clips": len({c["path"] for c in self.clips}), "triplets": len(self)}

    def _moving_crop(self, frames: np.ndarray, idx: list[int], places: list[tuple[int, int]]) -> tuple[int, int]:
        """Most clip crops hardly move (the blend is already right there); keep the place with most motion
        between the two frames around the gap (inputs 0 and 1 of a triplet, I1 and I2 of a window)."""
        a, b = (idx[0], idx[1]) if self.context == 2 else (idx[1], idx[2])
        c = self.cfg.crop

        def motion(place: tuple[int, int]) -> float:  # on every 4th pixel: cheap
            y, x = place
            pa, pb = frames[a, y:y + c:4, x:x + c:4], frames[b, y:y + c:4, x:x + c:4]
            return float(np.abs(pa.astype(np.int16) - pb).mean())

        return max(places, key=motion)

    def draw(self, rng: np.random.Generator) -> ClipDraw:
        """Every random choice of a sample, and no pixel work (``build`` does that): a rank of a data-parallel
        run draws the whole global batch, to keep its generator in step with one process's, and builds its share."""
        cfg = self.cfg
        want_half = rng.random() < cfg.half_scale_prob
        pool = [k for k, c in enumerate(self.clips) if (c["scale"] == 2) == want_half] or range(len(self.clips))
        k = pool[rng.integers(len(pool))]
        clip = self.clips[k]
        i = int(clip["starts"][rng.integers(len(clip["starts"]))])
        s = clip["stride"]
        h, w = clip["frames"].shape[1:3]
        j = int(rng.integers(1, 2 * s)) if cfg.arbitrary_time else s  # the truth is frame i + j, at t = j / 2s
        places = [(int(rng.integers(h - cfg.crop + 1)), int(rng.integers(w - cfg.crop + 1)))
                  for _ in range(cfg.motion_crops)]  # (the most moving one is picked in build)
        edges = (rng.random() < cfg.edge_prob, rng.random() < cfg.edge_prob) if self.context == 4 else (False, False)
        return ClipDraw(clip=k, start=i, j=j, places=tuple(places), edges=edges,
                        aug=draw_augmentation(rng, cfg, square=True))

    def build(self, d: ClipDraw) -> tuple[torch.Tensor, float]:
        """The sample ``d`` describes, and its truth's time (see ``sample_timed``)."""
        c = self.cfg.crop
        clip = self.clips[d.clip]
        frames, s = clip["frames"], clip["stride"]
        idx = sample_indices(d.start, s, self.context, d.j if self.context == 2 else None)
        y, x = d.places[0] if len(d.places) == 1 else self._moving_crop(frames, idx, list(d.places))
        trip = frames[idx, y : y + c, x : x + c]  # (3 or 5, c, c, 3)
        if d.edges[0]:  # (fancy indexing made a copy: the clip is untouched)
            trip[0] = trip[1]  # the start of a video, or a cut before I1: I0 is a copy of I1
        if d.edges[1]:
            trip[3] = trip[2]  # the end of a video, or a cut after I2
        return apply_augmentation(trip, d.aug, d.j / (2 * s))


@dataclass(frozen=True)
class Augmentation:
    """A sample's flips, rotation, reversal and colour jitter: drawn by ``draw_augmentation``, applied to every
    frame alike by ``apply_augmentation``."""

    flip_x: bool = False  # mirror left-right
    flip_y: bool = False  # mirror top-bottom
    quarter_turns: int = 0  # 90-degree rotations
    reverse: bool = False  # inputs in reverse time order (the truth's t becomes 1 - t)
    channels: tuple[int, ...] | None = None  # colour jitter: channel order, then gain and bias (None: no jitter)
    gain: float = 1.0
    bias: float = 0.0


@dataclass(frozen=True)
class ClipDraw:
    """One clip sample's random choices (``TripletDataset.draw``)."""

    clip: int  # index into ``TripletDataset.clips``
    start: int  # first frame of the sample
    j: int  # triplets: the truth is frame start + j (t = j / 2s)
    places: tuple[tuple[int, int], ...]  # candidate crop corners (y, x); the most moving is used
    edges: tuple[bool, bool]  # four-frame windows: I0 (I3) replaced by a copy of I1 (I2)
    aug: Augmentation


def draw_augmentation(rng: np.random.Generator, cfg: DataConfig, square: bool) -> Augmentation:
    """Flips, a 90-degree rotation (square crops only), temporal reversal and a colour jitter, drawn."""
    flip_x = rng.random() < cfg.flip_prob
    flip_y = rng.random() < cfg.flip_prob
    turns = int(rng.integers(1, 4)) if rng.random() < cfg.rot90_prob and square else 0
    reverse = rng.random() < cfg.reverse_prob
    if not cfg.jitter:
        return Augmentation(flip_x, flip_y, turns, reverse)
    channels = tuple(int(c) for c in rng.permutation(3))
    gain = 1 + cfg.jitter * (2 * rng.random() - 1)
    bias = cfg.jitter * 0.5 * (2 * rng.random() - 1)
    return Augmentation(flip_x, flip_y, turns, reverse, channels, gain, bias)


def augment_motion(motion: np.ndarray, aug: Augmentation) -> torch.Tensor:
    """A motion field ``(c, c, 4)`` (``(dx0, dy0, dx1, dy1)`` per pixel: where the truth's pixel is in input 0 and in
    input 1) under the flips, rotation and reversal ``apply_augmentation`` gives the frames: ``(4, c, c)`` float32."""
    m = motion
    if aug.flip_x:
        m = m[:, ::-1] * np.array([-1, 1, -1, 1], dtype=m.dtype)
    if aug.flip_y:
        m = m[::-1] * np.array([1, -1, 1, -1], dtype=m.dtype)
    for _ in range(aug.quarter_turns):  # np.rot90 takes (x, y) to (y, w - 1 - x): a vector (dx, dy) to (dy, -dx)
        m = np.rot90(m, k=1, axes=(0, 1))
        m = np.stack([m[..., 1], -m[..., 0], m[..., 3], -m[..., 2]], axis=-1)
    if aug.reverse:  # the inputs swap places
        m = m[..., [2, 3, 0, 1]]
    return torch.from_numpy(np.ascontiguousarray(m)).permute(2, 0, 1).float()


def apply_augmentation(trip: np.ndarray, aug: Augmentation, t: float = 0.5) -> tuple[torch.Tensor, float]:
    """``trip``: the inputs in time order, then the truth (``(F, c, c, 3)`` uint8) at time ``t`` between the two
    frames around the gap; the same flips, rotation and jitter for all; reversal reverses the inputs and so turns
    ``t`` into ``1 - t``. Returns the frames ``(F, 3, c, c)`` in [0, 1] and the truth's time."""
    if aug.flip_x:
        trip = trip[:, :, ::-1]
    if aug.flip_y:
        trip = trip[:, ::-1]
    if aug.quarter_turns:
        trip = np.rot90(trip, k=aug.quarter_turns, axes=(1, 2))
    if aug.reverse:
        trip = trip[[*range(len(trip) - 2, -1, -1), len(trip) - 1]]
        t = 1 - t
    x = torch.from_numpy(np.ascontiguousarray(trip)).permute(0, 3, 1, 2).float() / 255  # (F, 3, c, c)
    if aug.channels is not None:
        x = (x[:, list(aug.channels)] * aug.gain + aug.bias).clamp(0, 1)
    return x, t
