"""The motion at time t, matched symmetrically (parameter-free; ``Film`` uses it when ``FilmConfig.time_levels`` > 0).

FILM warps frame 0 by ``t * flow_10`` and frame 1 by ``(1 - t) * flow_01``: flows measured on the *inputs'* grids
used on the grid of the frame at time t, which misplaces thin structures and motion that changes across the
picture, and lets the two warped frames disagree (the output is then a double image). Here one motion vector
``v`` per pixel *of the frame at time t* is found so that the two inputs agree along it,

    frame0(x - t v) ~ frame1(x + (1 - t) v),

the "bilateral" matching of motion-compensated interpolation, solved like the flow pyramid: damped Lucas-Kanade
steps on the grey images, each followed by the confidence-weighted mean of ``v`` (``film_parts.confidence_mean``,
as the flow pyramid smooths its flows), coarse to fine over the ``time_levels`` finest pyramid levels down to
``time_finest``. It starts, per pixel, from whichever of three candidates the two inputs agree on best (over a
5-pixel box): the mean of the two FILM approximations, or either one of them.

Symmetric matching has no answer where a pixel of the frame at time t is visible in one input only (occlusion,
content entering the picture): there it finds any vector along which the two inputs happen to look alike. So
its warps are used where both input flows pass the forward-backward check (``layers.fb_consistency`` with
``vis_sigma``, sampled where each input is read), and FILM's approximation elsewhere.

Measured on 103 drop-frame triplets of 12 training clips at strides 1, 2 and 3 (``python tools/lk_sweep.py LIST
--try time_levels=0``; its docstring makes LIST): film-s without it 34.75 / 30.59 / 28.74 dB, with it 34.89 / 30.71 /
28.88 dB. In one run of ``--try time_finest=0 --try time_iters=2``: matching down to full resolution scored
34.91 / 30.72 / 28.89 dB at 0.62 s per triplet against film-s's 0.47 s; two steps per level instead of four 34.88 /
30.71 / 28.87 dB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from framefill.models.film_config import FilmConfig
from framefill.models.film_parts import confidence_mean
from framefill.models.layers import box_filter, fb_consistency, lucas_kanade_step, resize_flow, upsample2, warp

CANDIDATE_BOX = 5  # pixels over which the starting candidates are compared


def time_warps(img0: torch.Tensor, img1: torch.Tensor, approx0: torch.Tensor, approx1: torch.Tensor,
               grey0: list[torch.Tensor], grey1: list[torch.Tensor], flows: list[torch.Tensor], t: torch.Tensor,
               cfg: FilmConfig, refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
               trust_fixed: float | None = None, bicubic: bool = False) -> tuple[torch.Tensor, ...]:
    """Both inputs warped to time ``t`` along the symmetric motion where the flows are consistent, by FILM's
    approximation (``approx0``, ``approx1``: the inputs already warped that way) elsewhere.

    Everything but the final warp runs at pyramid level ``time_finest`` and coarser; the motion and the
    trust in it are upsampled to full resolution. ``refine(v, trust)`` (``Film``'s learned refiner), given the
    motion and the trust at that level, returns corrections ``(N, 4, H, W)`` (pixels of the full frame) of where
    frame 0 and frame 1 are read; both warps of each input move by its correction. ``trust_fixed`` replaces the
    flows' trust by one value everywhere (0: FILM's approximation, 1: the symmetric motion), for measurements.
    ``bicubic``: also the same two reads sampled bicubic (``Film``'s sharpener chooses between them per pixel).

    Shape:
        img0, img1, approx0, approx1: ``(N, C, H, W)``; grey0, grey1: the inputs' grey pyramids, finest first
        (level 0 is ``H x W``); flows: the flow pyramid, level j ``(2N, 2, h_j, w_j)``, flow_10 then flow_01;
        t: ``(N, 1, 1, 1)``. Returns two ``(N, C, H, W)``, four with ``bicubic``.
    """
    v, trust_low = time_motion(grey0, grey1, flows, t, cfg)  # at level time_finest
    if trust_fixed is not None:
        trust_low = torch.full_like(trust_low, trust_fixed)
    size = img0.shape[-2:]
    trust = upsample2(trust_low, size)
    full = resize_flow(v, size)
    shift = torch.cat([-t * full, (1 - t) * full])  # frame 0's rows, frame 1's
    both = torch.cat([img0, img1])
    near = flows[0] * torch.cat([t, 1 - t])  # FILM's approximation (how approx0 and approx1 were read)
    if refine is not None:
        delta = refine(v, trust_low)
        delta = torch.cat([delta[:, :2], delta[:, 2:]])
        near = near + delta
        approx0, approx1 = warp(both, near).chunk(2)
        shift = shift + delta
    sym0, sym1 = warp(both, shift).chunk(2)
    reads = torch.lerp(approx0, sym0, trust), torch.lerp(approx1, sym1, trust)
    if not bicubic:
        return reads
    (a0, a1), (s0, s1) = warp(both, near, "bicubic").chunk(2), warp(both, shift, "bicubic").chunk(2)
    return reads + (torch.lerp(a0, s0, trust), torch.lerp(a1, s1, trust))


def shifted(refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, shift: torch.Tensor,
            v: torch.Tensor, trust: torch.Tensor) -> torch.Tensor:
    """``time_warps``' ``refine`` plus a fixed ``shift`` ``(N, 4, H, W)`` of where the inputs are read (bind the first
    two with ``functools.partial``); the shift alone without a ``refine``."""
    return shift if refine is None else refine(v, trust) + shift


def time_motion(grey0: list[torch.Tensor], grey1: list[torch.Tensor], flows: list[torch.Tensor], t: torch.Tensor,
                cfg: FilmConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric motion at ``t`` (``symmetric_motion``) and the trust in it, ``(N, 1, h, w)`` in [0, 1] (the
    product of both inputs' forward-backward consistency where each is read), at pyramid level ``time_finest``."""
    n = grey0[0].shape[0]
    v = symmetric_motion(grey0, grey1, flows, t, cfg)
    fine = flows[cfg.time_finest]
    flow_10, flow_01 = fine[:n], fine[n:]
    consistency = fb_consistency(torch.cat([flow_01, flow_10]), fine, cfg.vis_sigma)  # frame 0's grid first
    c0, c1 = warp(consistency, torch.cat([t * flow_10, (1 - t) * flow_01])).chunk(2)  # where each input is read
    return v, c0 * c1


def symmetric_motion(grey0: list[torch.Tensor], grey1: list[torch.Tensor], flows: list[torch.Tensor],
                     t: torch.Tensor, cfg: FilmConfig) -> torch.Tensor:
    """The motion ``v`` (frame 0 to frame 1, on the grid of the frame at time t) with
    ``frame0(x - t v) ~ frame1(x + (1 - t) v)``, ``(N, 2, h, w)`` in pixels of pyramid level ``time_finest``."""
    n = grey0[0].shape[0]
    start = cfg.time_levels - 1
    flow_10, flow_01 = flows[start][:n], flows[start][n:]
    candidates = [0.5 * (flow_01 - flow_10), -flow_10, flow_01]
    errors = torch.stack([_mismatch(grey0[start], grey1[start], c, t, CANDIDATE_BOX) for c in candidates])
    best = errors.min(0).indices  # (N, 1, h, w); argmin(0) is the same first index, 40x slower on the CPU
    v = torch.where(best == 1, candidates[1], torch.where(best == 2, candidates[2], candidates[0]))
    for level in range(start, cfg.time_finest - 1, -1):
        g0, g1 = grey0[level], grey1[level]
        v = resize_flow(v, g0.shape[-2:])
        for _ in range(cfg.time_iters):
            a, b = _sides(g0, g1, v, t)
            step, conf = lucas_kanade_step(a, b, cfg.lk_window, cfg.lk_damping, with_confidence=True)
            v = confidence_mean(v + step, conf, lambda u, g0=g0, g1=g1: torch.sub(*_sides(g0, g1, u, t)), cfg)
    return v


def _sides(g0: torch.Tensor, g1: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """frame0(x - t v) and frame1(x + (1 - t) v) in one warp."""
    return warp(torch.cat([g0, g1]), torch.cat([-t * v, (1 - t) * v])).chunk(2)


def _mismatch(g0: torch.Tensor, g1: torch.Tensor, v: torch.Tensor, t: torch.Tensor, box: int) -> torch.Tensor:
    a, b = _sides(g0, g1, v, t)
    return box_filter((a - b).abs(), box)
