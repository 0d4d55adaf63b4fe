"""Drawn pictures for synthetic scenes (``SynthConfig.drawn``): line art and flat-coloured (cel) shapes.

Photos look like camera footage; animation does not. It is flat colour and lines one to three pixels wide, which
a motion estimated at a quarter of the resolution (film's refiner works there) can miss or smear onto the layer
beside them, and whose flat insides show no motion at all. A drawn scene is a synthetic scene like any other (the
same camera and sprite motions, the same exact middle frame and exact motion, ``synth.exact_motion``) whose
background is a drawing on flat paper and whose sprites are outlined flat shapes or loose strokes.

Everything is drawn at ``scale`` source pixels per output pixel, so a line ``width`` pixels wide in the output is
``width * scale`` wide here. Colours: RGB uint8; one ink and one paper colour per scene, far apart in brightness
(light lines on dark paper or dark on light), and flat fills anywhere between.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WIDTH = (0.8, 3.5)  # stroke widths in output pixels, log-uniform
SHIFT = 4  # cv2's fractional bits: points at 1/16 pixel


def palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An ink and a paper colour, ``(3,)`` uint8 each: one dark (luma under 70), the other light (over 185)."""
    dark = rng.uniform(0, 60) + rng.uniform(0, 10, 3)
    light = rng.uniform(195, 245) + rng.uniform(0, 10, 3)
    ink, paper = (light, dark) if rng.random() < 0.5 else (dark, light)
    return ink.astype(np.uint8), paper.astype(np.uint8)


def fill_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(20, 235, 3).astype(np.uint8)


def _points(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * 2**SHIFT).astype(np.int32)


def _curve(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A random path across a canvas of ``shape`` (h, w), ``(n, 2)`` float (x, y): a straight line, a broken line
    or a smooth bend."""
    h, w = shape
    start = rng.uniform(0, 1, 2) * (w, h)
    kind = rng.integers(3)
    if kind == 0:  # a straight line, often long (the edges of mountains, buildings)
        length = max(h, w) * rng.uniform(0.2, 1.2)
        return start + np.outer([0.0, 1.0], _direction(rng) * length)
    if kind == 1:  # a broken line
        n = int(rng.integers(3, 7))
        steps = np.stack([_direction(rng) for _ in range(n - 1)]) * max(h, w) * rng.uniform(0.05, 0.3, (n - 1, 1))
        return start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    n = 24  # a smooth bend: a direction that turns steadily
    turn = rng.uniform(-2.5, 2.5) / n
    a = rng.uniform(0, 2 * math.pi) + turn * np.arange(n)
    step = max(h, w) * rng.uniform(0.2, 0.8) / n
    return start + np.cumsum(step * np.stack([np.cos(a), np.sin(a)], axis=1), axis=0)


def _direction(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    return np.array([math.cos(a), math.sin(a)])


def _width(rng: np.random.Generator, scale: float) -> int:
    lo, hi = WIDTH
    return max(1, round(scale * math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def strokes(rng: np.random.Generator, canvas: np.ndarray, colour: np.ndarray, count: int, scale: float) -> None:
    """Draws ``count`` random anti-aliased strokes (lines, broken lines, bends, arcs) onto ``canvas`` in place."""
    col = tuple(int(c) for c in colour)
    h, w = canvas.shape[:2]
    for _ in range(count):
        width = _width(rng, scale)
        if rng.random() < 0.25:  # an ellipse, whole or an arc of it
            centre = rng.uniform(0, 1, 2) * (w, h)
            axes = max(h, w) * rng.uniform(0.03, 0.4, 2)
            start = rng.uniform(0, 360)
            end = start + (360 if rng.random() < 0.3 else rng.uniform(60, 300))
            cv2.ellipse(canvas, tuple(_points(centre)), tuple(_points(axes)), float(rng.uniform(0, 180)), start, end,
                        col, width, cv2.LINE_AA, SHIFT)
        else:
            cv2.polylines(canvas, [_points(_curve(rng, (h, w)))], False, col, width, cv2.LINE_AA, SHIFT)


def picture(rng: np.random.Generator, shape: tuple[int, int], ink: np.ndarray, paper: np.ndarray,
            scale: float) -> np.ndarray:
    """A drawn background ``(h, w, 3)`` uint8: paper, a few flat-coloured outlined regions, then strokes, about as
    many as an animation's background has for the area."""
    h, w = shape
    canvas = np.empty((h, w, 3), dtype=np.uint8)
    canvas[:] = paper
    area = h * w / (64 * scale) ** 2  # in blocks of 64 output pixels
    for _ in range(int(rng.poisson(0.12 * area))):
        centre, radius = rng.uniform(0, 1, 2) * (w, h), max(h, w) * rng.uniform(0.03, 0.2)
        outline = _points(_blob(rng, centre, radius))
        cv2.fillPoly(canvas, [outline], tuple(int(c) for c in fill_colour(rng)), cv2.LINE_AA, SHIFT)
        cv2.polylines(canvas, [outline], True, tuple(int(c) for c in ink), _width(rng, scale), cv2.LINE_AA, SHIFT)
    strokes(rng, canvas, ink, max(1, int(rng.poisson(0.35 * area))), scale)
    return canvas


def _blob(rng: np.random.Generator, centre: np.ndarray, radius: float) -> np.ndarray:
    """A closed star-shaped outline, smooth (a cloud, a head) or angular, ``(n, 2)`` float points."""
    n = 48
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(1, 6):  # a few low harmonics: a smooth, irregular round shape
        r += rng.uniform(-0.25, 0.25) / k * np.cos(k * a + rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.4:  # angular: keep a few corners
        keep = np.sort(rng.choice(n, int(rng.integers(3, 8)), replace=False))
        a, r = a[keep], r[keep]
    return centre + radius * np.clip(r, 0.3, 1.0)[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1)


def sprite(rng: np.random.Generator, side: int, ink: np.ndarray, paper: np.ndarray, scale: float) -> np.ndarray:
    """A drawn sprite ``(side, side, 4)`` uint8 RGBA, inside a 2-pixel transparent margin: mostly a flat-coloured
    shape outlined in ink, with a few strokes inside (a cel); otherwise loose strokes alone, whose alpha is the ink
    (line art over whatever is behind it)."""
    rgb = np.empty((side, side, 3), dtype=np.uint8)
    alpha = np.zeros((side, side), dtype=np.uint8)
    centre, radius = np.full(2, (side - 1) / 2), side / 2 - 2 - scale * WIDTH[1]
    if rng.random() < 0.7:
        rgb[:] = paper if rng.random() < 0.5 else fill_colour(rng)
        outline = _points(_blob(rng, centre, max(radius, 1.0)))
        cv2.fillPoly(alpha, [outline], 255, cv2.LINE_AA, SHIFT)
        inside = rgb.copy()
        strokes(rng, inside, ink, int(rng.integers(0, 4)), scale)
        rgb[:] = np.where(alpha[..., None] > 0, inside, rgb)
        width = _width(rng, scale)
        cv2.polylines(rgb, [outline], True, tuple(int(c) for c in ink), width, cv2.LINE_AA, SHIFT)
        cv2.polylines(alpha, [outline], True, 255, width, cv2.LINE_AA, SHIFT)  # the outline is part of the shape
    else:
        rgb[:] = ink
        strokes(rng, alpha, np.array([255]), int(rng.integers(1, 5)), scale)
    margin = np.zeros_like(alpha)
    margin[2:-2, 2:-2] = 1
    return np.dstack([rgb, alpha * margin])


def mask(rng: np.random.Generator, side: int) -> np.ndarray:
    """A photo sprite's shape: a random ellipse or star-shaped polygon, anti-aliased and softened, inside a
    ``(side, side)`` uint8 mask."""
    mask = np.zeros((side, side), dtype=np.uint8)
    r = side / 2 - 2  # a margin: the bilinear warp of the patch never reads an opaque border pixel
    centre = (side - 1) / 2
    if rng.random() < 0.5:
        axes = (r * rng.uniform(0.6, 1.0), r * rng.uniform(0.3, 1.0))
        box = ((centre, centre), (2 * axes[0], 2 * axes[1]), float(rng.uniform(0, 180)))
        cv2.ellipse(mask, box, 255, thickness=-1, lineType=cv2.LINE_AA)
    else:
        n = int(rng.integers(3, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.45, 1.0, n)
        pts = np.stack([centre + rad * np.cos(ang), centre + rad * np.sin(ang)], axis=1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)  # 1/16 px
    sigma = rng.uniform(0.3, 1.5)  # a soft edge of about a source pixel
    return cv2.GaussianBlur(mask, (0, 0), sigma)
