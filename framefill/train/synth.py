"""Synthetic training triplets from still photos: camera motion over a photo plus moving sprites, with an exact
middle frame.

Every frame is rendered straight from the photos at its own time ``t`` in {0, 0.5, 1} (with
``DataConfig.arbitrary_time`` the truth is at a random ``t`` in ``TIME_RANGE`` instead of 0.5); the truth is
never made from the outer ones, so it is the true in-between even under occlusion, rotation and zoom.

A scene is a stack of layers, bottom first: the background photo seen through a moving camera, then 0-3
sprites (patches of other photos under a soft-edged ellipse or polygon mask) with their own motion, composited
in that (random) depth order, so sprites occlude the background and each other, and uncover them as they move.
Each layer's geometry is a ``Motion``: a map from output pixels to source pixels (scale, rotation, a little
perspective, translation) whose parameters move linearly in a time ``tau(t) = t + a t (t - 1)``; ``a = 0`` is
constant speed, ``a != 0`` accelerates (the middle frame is then the scene at ``tau(0.5) = 0.5 - a / 4``, still
rendered exactly). Motion is given per step (``t`` from 0 to 0.5), as real clips' stride is.

Photos are decoded once and kept in RAM (uint8, longer side at most ``max_side``) with a few 2x-downscaled
copies, so a crop at any zoom is resampled from a level at most 2x finer than itself: sharp and hardly aliased.
Output pixel ``(x, y)`` maps to the source through the homography ``Motion.matrix(t)``
(``cv2.warpPerspective`` with ``WARP_INVERSE_MAP``); pixel centres sit on integer coordinates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from framefill.frames import IMAGE_EXTS, VideoError, is_image_file, natural_key, read_image
from framefill.train import drawn
from framefill.train.data import (
    Augmentation,
    DataConfig,
    Samples,
    apply_augmentation,
    augment_motion,
    draw_augmentation,
)

log = logging.getLogger(__name__)

Vec = tuple[float, float]
TIME_RANGE: Vec = (0.125, 0.875)  # arbitrary-time truths: uniform here (nearer an input, the input is the answer)


@dataclass(frozen=True)
class SynthConfig:
    ratio: float = 0.0  # chance that a training triplet is synthetic (drawn per triplet); 0: photos unused
    max_side: int = 2048  # photos are kept in RAM downscaled so their longer side is at most this (1080p: ~3000)
    scale: Vec = (1.0, 4.0)  # photo pixels per output pixel, log-uniform; >= 1 keeps crops sharp
    shift: float = 0.125  # largest camera pan per step, as a fraction of the output's shorter side
    rotate: float = 2.0  # largest camera rotation per step (degrees)
    zoom: float = 0.03  # largest camera zoom per step (log of the scale change)
    tilt: float = 0.02  # largest perspective change per step (relative scale change over half the output)
    roll: float = 10.0  # camera rotation at t = 0, uniform in +-roll degrees
    sprites: tuple[int, int] = (0, 3)  # sprites per scene, uniform in this range (both ends included)
    sprite_size: Vec = (0.15, 0.6)  # sprite diameter, as a fraction of the output's shorter side
    sprite_shift: float = 0.125  # largest sprite motion on screen per step, as a fraction of the shorter side
    sprite_rotate: float = 10.0  # largest sprite rotation per step (degrees)
    sprite_zoom: float = 0.05  # largest sprite zoom per step (log of the scale change)
    accel: float = 0.1  # each path's acceleration a is uniform in +-accel (middle at 0.5 - a / 4 of the path)
    drawn: float = 0.0  # chance that a scene is drawn (line art and flat colour, train/drawn.py), not photographed


@dataclass(frozen=True)
class Motion:
    """Output pixel -> source pixel map at time ``t``: ``T(src(t)) . scale(t) R(angle(t)) . P(tilt(t)) . T(-dst(t))``.

    ``P`` is the projective matrix ``[[1, 0, 0], [0, 1, 0], [tx, ty, 1]]`` (a little perspective about ``dst``).
    Every parameter moves linearly in ``tau(t) = t + accel * t * (t - 1)``; the ``*_move`` fields are the
    changes from t = 0 to t = 1. A camera moves ``src`` over the photo; a sprite moves ``dst`` over the output.
    """

    src: Vec  # source point (x, y) seen at ``dst`` at t = 0 (source pixels)
    dst: Vec  # output point (x, y) (output pixels)
    scale: float = 1.0  # source pixels per output pixel at t = 0
    src_move: Vec = (0.0, 0.0)  # source pixels
    dst_move: Vec = (0.0, 0.0)  # output pixels
    zoom: float = 0.0  # log of the scale change
    angle: float = 0.0  # degrees at t = 0
    turn: float = 0.0  # degrees
    tilt: Vec = (0.0, 0.0)  # (tx, ty) at t = 0, per output pixel
    tilt_move: Vec = (0.0, 0.0)
    accel: float = 0.0  # |accel| < 1 keeps the path monotonic

    def tau(self, t: float) -> float:
        return t + self.accel * t * (t - 1)

    def at(self, t: float) -> Motion:
        """The still motion whose every time looks like this one at ``t`` (same matrix, bit for bit, at t = 0)."""
        u = self.tau(t)
        return Motion(src=_lerp(self.src, self.src_move, u), dst=_lerp(self.dst, self.dst_move, u),
                      scale=self.scale * math.exp(u * self.zoom), angle=self.angle + u * self.turn,
                      tilt=_lerp(self.tilt, self.tilt_move, u))

    def matrix(self, t: float) -> np.ndarray:
        """The ``(3, 3)`` float64 homography taking output pixel ``(x, y, 1)`` to source pixel coordinates."""
        u = self.tau(t)
        (sx, sy), (dx, dy) = _lerp(self.src, self.src_move, u), _lerp(self.dst, self.dst_move, u)
        s, a = self.scale * math.exp(u * self.zoom), math.radians(self.angle + u * self.turn)
        tx, ty = _lerp(self.tilt, self.tilt_move, u)
        c, n = s * math.cos(a), s * math.sin(a)
        rot = np.array([[c, -n, sx], [n, c, sy], [0.0, 0.0, 1.0]])  # scale, rotation, then to src
        persp = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [tx, ty, 1.0]])
        return rot @ persp @ np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]])


def _lerp(p: Vec, move: Vec, u: float) -> Vec:
    return (p[0] + u * move[0], p[1] + u * move[1])


@dataclass(frozen=True)
class Layer:
    """A source image (``(H, W, 3)`` uint8 RGB, or ``(H, W, 4)`` RGBA whose alpha is the sprite mask) and its motion."""

    image: np.ndarray
    motion: Motion


@dataclass(frozen=True)
class Scene:
    size: tuple[int, int]  # output (h, w)
    layers: tuple[Layer, ...]  # bottom first: the background (RGB) then the sprites (RGBA)

    def at(self, t: float) -> Scene:
        """This scene frozen at ``t``: every time renders as this one does at ``t``."""
        return replace(self, layers=tuple(replace(ly, motion=ly.motion.at(t)) for ly in self.layers))


def _box(layer: Layer, t: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The output pixels ``(x0, y0, x1, y1)`` a sprite's patch can reach at ``t`` (empty: x0 >= x1 or y0 >= y1)."""
    ph, pw = layer.image.shape[:2]
    corners = np.array([[-1, -1, 1], [pw, -1, 1], [-1, ph, 1], [pw, ph, 1]], dtype=np.float64).T  # (3, 4)
    q = np.linalg.inv(layer.motion.matrix(t)) @ corners  # sprites have no perspective: q[2] > 0
    x, y = q[0] / q[2], q[1] / q[2]
    h, w = size
    return (max(0, math.floor(x.min())), max(0, math.floor(y.min())),
            min(w, math.ceil(x.max()) + 1), min(h, math.ceil(y.max()) + 1))


def _warp(layer: Layer, t: float, size: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``layer`` at ``t`` over the output (or over its ``box`` only: same pixels, less work)."""
    x0, y0, x1, y1 = box or (0, 0, size[1], size[0])
    shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])  # box pixel -> output pixel
    rgba = layer.image.shape[2] == 4  # sprites: outside the patch is transparent; the background never gets there
    border = cv2.BORDER_CONSTANT if rgba else cv2.BORDER_REFLECT101
    return cv2.warpPerspective(layer.image, layer.motion.matrix(t) @ shift, (x1 - x0, y1 - y0),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)


def render(scene: Scene, t: float) -> np.ndarray:
    """The scene at time ``t``, ``(h, w, 3)`` uint8 RGB: each layer warped from its source, composited bottom up."""
    out = _warp(scene.layers[0], t, scene.size).astype(np.float32)  # (h, w, 3)
    for layer in scene.layers[1:]:
        x0, y0, x1, y1 = box = _box(layer, t, scene.size)
        if x0 >= x1 or y0 >= y1:
            continue  # off screen
        rgba = _warp(layer, t, scene.size, box).astype(np.float32)  # (y1 - y0, x1 - x0, 4)
        alpha = rgba[..., 3:] / 255
        under = out[y0:y1, x0:x1]
        under += (rgba[..., :3] - under) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def owners(scene: Scene, t: float) -> np.ndarray:
    """Which layer each output pixel mostly shows at ``t`` (0 = background), ``(h, w)`` int64: occlusion maps."""
    owner = np.zeros(scene.size, dtype=np.int64)
    for i, layer in enumerate(scene.layers[1:], start=1):
        owner[_warp(layer, t, scene.size)[..., 3] > 127] = i
    return owner


def exact_motion(scene: Scene, t: float) -> np.ndarray:
    """Where each pixel of the frame at ``t`` is in the frame at 0 and in the frame at 1, ``(h, w, 4)`` float32: the
    displacements ``(dx0, dy0, dx1, dy1)`` in output pixels, of the layer each pixel mostly shows (``owners``).
    Exact: the layer's own homographies, ``matrix(u)^-1 . matrix(t)``. Where that point is hidden or off screen in
    an input, it is still where the layer's point is (the motion, not what the input shows there)."""
    h, w = scene.size
    ys, xs = np.mgrid[0:h, 0:w]
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)]).astype(np.float64)  # (3, h w)
    owner = owners(scene, t).ravel()
    out = np.zeros((h * w, 4), dtype=np.float64)
    for i, layer in enumerate(scene.layers):
        sel = owner == i
        if not sel.any():
            continue
        src = layer.motion.matrix(t) @ grid[:, sel]
        for k, u in enumerate((0.0, 1.0)):
            q = np.linalg.solve(layer.motion.matrix(u), src)
            out[sel, 2 * k:2 * k + 2] = (q[:2] / q[2] - grid[:2, sel]).T
    return out.reshape(h, w, 4).astype(np.float32)


def _uniform(rng: np.random.Generator, bound: float) -> float:
    return float(rng.uniform(-bound, bound)) if bound else 0.0


def _polar(rng: np.random.Generator, length: float) -> Vec:
    a = rng.uniform(0, 2 * np.pi)
    return (length * math.cos(a), length * math.sin(a))


def _corners(motion: Motion, size: tuple[int, int]) -> np.ndarray:
    """Where the output's corner pixels come from at t = 0, 0.5 and 1, ``(12, 2)`` source (x, y)."""
    h, w = size
    q = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64).T  # (3, 4)
    pts = [motion.matrix(t) @ q for t in (0.0, 0.5, 1.0)]
    return np.concatenate([(p[:2] / p[2]).T for p in pts])


@dataclass(frozen=True)
class SceneDraw:
    """One synthetic sample's random choices (``SyntheticTriplets.draw``)."""

    scene: Scene
    t: float  # the truth's time
    aug: Augmentation


class SyntheticTriplets(Samples):
    """Synthetic triplets from a folder of photos (searched recursively), as float tensors ``(3, 3, h, w)``.

    ``sample(rng)`` returns ``(frame0, frame1, middle)`` stacked on dim 0 in [0, 1], augmented
    exactly as ``TripletDataset.sample``; ``size`` (default ``cfg.crop``, square) may be up to 1080p and more.

    Args:
        photos: a folder of photos (or one photo); grey images are expanded to RGB.
        cfg: the crop and the augmentations.
        synth: the motion model.
    """

    def __init__(self, photos: Path, cfg: DataConfig, synth: SynthConfig | None = None) -> None:
        self.cfg, self.synth = cfg, synth or SynthConfig()
        root = Path(photos)
        files = [root] if root.is_file() else sorted(
            (p for p in root.rglob("*") if is_image_file(p) and not p.name.startswith(".")),
            key=lambda p: natural_key(str(p.relative_to(root))))
        self.names: list[str] = []
        self.levels: list[list[np.ndarray]] = []  # per photo: full (up to max_side), 1/2, 1/4, ...
        for f in files:
            try:
                img = read_image(f)
            except VideoError as e:  # an unreadable photo is skipped, not fatal
                log.warning("skipping %s: %s", f, e)
                continue
            h, w = img.shape[:2]
            if min(h, w) < 16:
                log.warning("skipping %s: %dx%d is too small", f, w, h)
                continue
            scale = min(1.0, self.synth.max_side / max(h, w))
            if scale < 1:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            self.names.append(str(f))
            self.levels.append(self._pyramid(img))
        if not self.levels:
            raise ValueError(f"no readable photos ({', '.join(sorted(IMAGE_EXTS))}) under {photos}")
        log.info("%d photos from %s", len(self.levels), photos)

    def _pyramid(self, img: np.ndarray) -> list[np.ndarray]:
        """``img`` and its 2x-downscaled copies, as many as the largest scale needs (sides of 32 and more)."""
        pyramid = [img]
        while len(pyramid) <= math.log2(max(self.synth.scale)) and min(pyramid[-1].shape[:2]) >= 64:
            ph, pw = pyramid[-1].shape[:2]
            pyramid.append(cv2.resize(pyramid[-1], (pw // 2, ph // 2), interpolation=cv2.INTER_AREA))
        return pyramid

    def __len__(self) -> int:
        return len(self.levels)

    def summary(self) -> dict[str, int]:
        return {"photos": len(self)}

    def draw(self, rng: np.random.Generator, size: int | tuple[int, int] | None = None) -> SceneDraw:
        """Every random choice of a sample (the scene, the truth's time: 0.5, or with ``cfg.arbitrary_time``
        uniform in ``TIME_RANGE``; the augmentation); ``build`` renders it."""
        scene = self.scene(rng, size)
        t = float(rng.uniform(*TIME_RANGE)) if self.cfg.arbitrary_time else 0.5
        return SceneDraw(scene, t, draw_augmentation(rng, self.cfg, square=scene.size[0] == scene.size[1]))

    def build(self, d: SceneDraw) -> tuple[torch.Tensor, float]:
        trip = np.stack([render(d.scene, u) for u in (0.0, 1.0, d.t)])  # (3, h, w, 3): in0, in1, gt
        return apply_augmentation(trip, d.aug, d.t)

    def motion(self, d: SceneDraw) -> torch.Tensor:
        """The exact motion of ``d``'s truth into each input (``exact_motion``), augmented as ``build`` augments the
        frames: ``(4, h, w)``."""
        return augment_motion(exact_motion(d.scene, d.t), d.aug)

    def scene(self, rng: np.random.Generator, size: int | tuple[int, int] | None = None) -> Scene:
        """A random scene of output size ``size`` (an int: square; default ``cfg.crop``)."""
        size = size or self.cfg.crop
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(h, w) < 8:
            raise ValueError(f"synthetic frames need a size of at least 8x8, got {h}x{w}")
        if self.synth.drawn and rng.random() < self.synth.drawn:  # a drawing on paper, drawn sprites
            ink, paper = drawn.palette(rng)
            s = self._target_scale(rng)
            side = min(4096, math.ceil(1.8 * s * max(h, w)))  # room for the camera's path at that scale
            picture = drawn.picture(rng, (side, side), ink, paper, s)
            bg, layer = self._background(rng, (h, w), [self._pyramid(picture)], s)
        else:
            bg, layer = self._background(rng, (h, w), self.levels)
            ink = paper = None
        lo, hi = self.synth.sprites
        sprites = [self._sprite(rng, (h, w), bg, ink, paper) for _ in range(int(rng.integers(lo, hi + 1)))]
        return Scene(size=(h, w), layers=(layer, *sprites))

    def _target_scale(self, rng: np.random.Generator) -> float:
        lo, hi = self.synth.scale
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)

    @staticmethod
    def _level(pyramid: list[np.ndarray], total: float, fits: Callable[[np.ndarray, float], bool]) -> tuple[int, float]:
        """The coarsest level of ``pyramid`` at most ``total`` times coarser than the output, and the scale left on
        it."""
        level = min(len(pyramid) - 1, max(0, math.floor(math.log2(max(total, 1.0)))))
        while level > 0 and not fits(pyramid[level], 0.97 * total / 2**level):  # 3%: odd sides halved
            level -= 1
        return level, total / 2**level

    def _background(self, rng: np.random.Generator, size: tuple[int, int], pictures: list[list[np.ndarray]],
                    target: float | None = None) -> tuple[int, Layer]:
        """One of ``pictures`` (pyramids: ``self.levels`` or a drawing) under a camera that pans, rotates, zooms and
        tilts, kept inside the picture at all three times, at ``target`` (default: random) pixels per output pixel."""
        sc, (h, w) = self.synth, size
        side = min(h, w)
        tilt = 2 * sc.tilt / side  # per output pixel: a relative scale change of sc.tilt over half the output
        pan = _polar(rng, 2 * sc.shift * side * rng.random())  # t 0 -> 1, output pixels
        unit = Motion(src=(0.0, 0.0), dst=((w - 1) / 2, (h - 1) / 2), src_move=pan, zoom=2 * _uniform(rng, sc.zoom),
                      angle=_uniform(rng, sc.roll), turn=2 * _uniform(rng, sc.rotate),
                      tilt=(_uniform(rng, tilt), _uniform(rng, tilt)),
                      tilt_move=(2 * _uniform(rng, tilt), 2 * _uniform(rng, tilt)),
                      accel=_uniform(rng, sc.accel))
        pts = _corners(unit, size)  # at scale s the footprint is s times this one, about the photo point src
        lo, ext = pts.min(axis=0), pts.max(axis=0) - pts.min(axis=0)

        def room(img: np.ndarray) -> float:  # the largest scale whose footprint fits in img
            return float(min((img.shape[1] - 1) / max(ext[0], 1e-6), (img.shape[0] - 1) / max(ext[1], 1e-6)))

        target = target or self._target_scale(rng)
        rooms = [room(levels[0]) for levels in pictures]
        need = 0.75 * min(sc.scale[0], max(rooms))  # no photo large enough: the largest ones, a little upsampled
        fit = [i for i, r in enumerate(rooms) if r >= need]
        photo = int(fit[rng.integers(len(fit))])
        level, s = self._level(pictures[photo], min(target, rooms[photo]), lambda img, s: room(img) >= s)
        img = pictures[photo][level]
        s = min(s, room(img))
        free = np.array([img.shape[1] - 1, img.shape[0] - 1]) - s * ext  # slack for the photo point
        x, y = -s * lo + rng.random(2) * np.maximum(free, 0)
        src = (float(x), float(y))
        return photo, Layer(img, replace(unit, src=src, scale=s, src_move=(s * pan[0], s * pan[1])))

    def _sprite(self, rng: np.random.Generator, size: tuple[int, int], background: int, ink: np.ndarray | None = None,
                paper: np.ndarray | None = None) -> Layer:
        """A soft-edged patch of another photo (or, given the scene's ``ink`` and ``paper``, a drawn shape) that moves,
        turns and zooms on its own."""
        sc, (h, w) = self.synth, size
        side = min(h, w)
        if ink is None:  # the photo is drawn before the diameter: photo scenes keep their generator's order
            photo = int(rng.integers(len(self) - 1)) if len(self) > 1 else 0
            photo += int(len(self) > 1 and photo >= background)  # any photo but the background's
        diameter = side * rng.uniform(*sc.sprite_size)  # output pixels
        if ink is None:
            level, s = self._level(self.levels[photo], self._target_scale(rng),
                                   lambda img, s: min(img.shape[:2]) >= s * diameter)
            img = self.levels[photo][level]
            patch = int(max(8, min(round(s * diameter), *img.shape[:2])))
            s = patch / diameter  # a photo smaller than the sprite: upsampled
            y0, x0 = int(rng.integers(img.shape[0] - patch + 1)), int(rng.integers(img.shape[1] - patch + 1))
            rgba = np.dstack([img[y0 : y0 + patch, x0 : x0 + patch], drawn.mask(rng, patch)])  # (patch, patch, 4)
        else:
            s = self._target_scale(rng)
            patch = int(max(8, min(round(s * diameter), 2048)))
            s = patch / diameter
            rgba = drawn.sprite(rng, patch, ink, paper, s)
        move = _polar(rng, 2 * sc.sprite_shift * side * rng.random())  # t 0 -> 1, output pixels
        mid = (rng.uniform(0, w - 1), rng.uniform(0, h - 1))  # on screen half way through
        motion = Motion(src=((patch - 1) / 2, (patch - 1) / 2), dst=(mid[0] - move[0] / 2, mid[1] - move[1] / 2),
                        scale=s, dst_move=move, zoom=2 * _uniform(rng, sc.sprite_zoom),
                        angle=float(rng.uniform(0, 360)), turn=2 * _uniform(rng, sc.sprite_rotate),
                        accel=_uniform(rng, sc.accel))
        return Layer(rgba, motion)
