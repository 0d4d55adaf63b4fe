"""film's learned motion refiner (``FilmConfig.refiner_filters``): the network, what it reads, and what it is trained
toward. ``Film`` applies it inside its matching at time t (``time_flow.time_warps``' ``refine``); the training step
(``framefill.train.loop.refiner_terms``) scores the model's frame and the corrected motion against
``privileged_motion``.

Why a stage here: film's motion is parameter-free up to the warps (Lucas-Kanade, the matching at time t), and a
learned correction placed before those steps was undone by them (measured: 13% of a correction at pyramid level 3
survived the Lucas-Kanade steps below it, none at level 5). The refiner corrects where
each input is read *after* the last of them, so what it learns is what the output shows; it is trained toward the
motion film's own flow finds from the true middle frame to each input, a target that says where a motion several
pixels away is right, which a photometric loss through a warp cannot.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.film_config import REFINER_LEVEL
from framefill.models.layers import ConvAct, box_filter, conv_input, grey, image_pyramid, resize_flow, warp

CONTEXT = 7  # pixels of the refiner's level over which its inputs' local contrast is measured
CONTRAST_FLOOR = 0.02  # grey levels added to it: flat areas' noise is not magnified


class MotionRefiner(nn.Module):
    """A learned correction of where each input is read to make the frame at time t, after the last parameter-free
    step of the motion.

    Film reads frame 0 at ``x + m0`` and frame 1 at ``x + m1``: along the symmetric motion at t where both flows
    pass the forward-backward check, along FILM's approximation (a flow measured on the other input's grid)
    elsewhere. Both are parameter-free and both fail the same way: where one input hides what the other shows
    (the approximation then reads the occluder), and where a motion was missed by more than Lucas-Kanade's window.
    This stage reads, at a quarter of the resolution (``REFINER_LEVEL``), the two inputs, the two reads and how
    they disagree, the two motions, the trust in the symmetric one, and a cost volume per input (``COST`` x
    ``COST`` offsets of its read around ``m0`` / ``m1``, each compared with the other input's read, summed over 3x3
    pixels as block matching does): where along a few pixels the two would agree. Images, disagreement and costs
    are divided by the local contrast, so that full-contrast line art looks to it as a dim photo does: with raw
    grey levels, a refiner fitted to rendered scenes moved the well-matched lines of line art by fractions of a
    pixel, and lost less there with its inputs normalised. Dilated convolutions give it the
    context of a large motion's occlusion (about 120 pixels of the full frame). It predicts corrections of ``m0``
    and ``m1`` (pixels of its level) that ``time_flow.time_warps`` applies to the full-resolution reads. Zero head:
    an untrained refiner changes nothing.

    Shape: input ``(N, INPUTS, H / 4, W / 4)``; output ``(N, 4, H / 4, W / 4)``: the corrections of m0, then m1.
    """

    COST = 5  # offsets per side of each cost volume (pixels of the quarter-resolution level, centred)
    INPUTS = 10 + 2 * COST * COST

    def __init__(self, filters: int) -> None:
        super().__init__()
        f = 2 * filters
        self.body = nn.Sequential(ConvAct(self.INPUTS, f), *(ConvAct(f, f, dilation=d) for d in (2, 4, 8)),
                                  ConvAct(f, f))
        self.head = nn.Conv2d(f, 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def cost_volume(source: torch.Tensor, motion: torch.Tensor, other: torch.Tensor, size: int) -> torch.Tensor:
    """``|source(x + motion + d) - other(x)|`` for the ``size x size`` integer offsets ``d`` around the motion,
    ``(N, size * size, H, W)``, for grey ``source`` and ``other`` ``(N, 1, H, W)`` and a ``motion`` ``(N, 2, H, W)``;
    the offsets ``(dy, dx)`` in row-major order from ``(-size // 2, -size // 2)``."""
    n = source.shape[0]
    r = size // 2
    offsets = torch.stack(torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij"), dim=-1)
    offsets = offsets.reshape(-1, 2).flip(-1).to(motion)  # (size * size, 2): (dx, dy)
    k = offsets.shape[0]
    moved = motion.unsqueeze(1) + offsets.view(1, k, 2, 1, 1)  # (N, k, 2, H, W)
    read = warp(source.repeat_interleave(k, dim=0), moved.flatten(0, 1))  # (N k, 1, H, W)
    return (read.view(n, k, *source.shape[-2:]) - other).abs()


def refiner_input(v: torch.Tensor, trust: torch.Tensor, grey0: list[torch.Tensor], grey1: list[torch.Tensor],
                  flows: list[torch.Tensor], t: torch.Tensor, time_finest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The refiner's input ``(N, MotionRefiner.INPUTS, h, w)`` float32 at pyramid level ``REFINER_LEVEL`` and the
    motions it corrects there, ``(N, 4, h, w)``: where frame 0 is read (``m0``, pixels of that level), then frame 1
    (``m1``); each the trust-weighted mix of the symmetric motion ``v`` and FILM's approximation, as the warps mix
    them. ``v``, ``trust``: ``time_flow.time_motion``'s, at level ``time_finest``; ``grey0``/``grey1``: the inputs'
    grey pyramids; ``flows``: film's flow pyramid (flow_10 then flow_01)."""
    n = v.shape[0]
    fine = flows[time_finest]
    m0 = torch.lerp(t * fine[:n], -t * v, trust)
    m1 = torch.lerp((1 - t) * fine[n:], (1 - t) * v, trust)
    g0, g1 = grey0[REFINER_LEVEL], grey1[REFINER_LEVEL]
    size = g0.shape[-2:]
    motion = torch.cat([resize_flow(m0, size), resize_flow(m1, size)], dim=1)
    r0, r1 = warp(torch.cat([g0, g1]), torch.cat([motion[:, :2], motion[:, 2:]])).chunk(2)
    trust = F.adaptive_avg_pool2d(trust, size)
    (n0, _), (n1, _), (nr0, c0), (nr1, c1) = (_normalised(g) for g in (g0, g1, r0, r1))
    x = torch.cat([n0, n1, nr0, nr1, 0.5 * (r0 - r1).abs() / (c0 + c1), motion / 4, trust,
                   0.25 * box_filter(cost_volume(g0, motion[:, :2], r1, MotionRefiner.COST), 3) / c1,
                   0.25 * box_filter(cost_volume(g1, motion[:, 2:], r0, MotionRefiner.COST), 3) / c0], dim=1)
    return x, motion


def _normalised(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A grey image's local detail ``(g - local mean) / contrast`` and that contrast (the local standard deviation
    over ``CONTEXT`` x ``CONTEXT`` pixels plus ``CONTRAST_FLOOR``), ``(N, 1, h, w)`` each."""
    mean = box_filter(g, CONTEXT)
    contrast = (box_filter(g * g, CONTEXT) - mean * mean).clamp(min=0).sqrt() + CONTRAST_FLOOR
    return (g - mean) / contrast, contrast


def corrections(net: MotionRefiner, v: torch.Tensor, trust: torch.Tensor, *, grey0: list[torch.Tensor],
                grey1: list[torch.Tensor], flows: list[torch.Tensor], t: torch.Tensor, time_finest: int,
                size: tuple[int, int], keep: dict | None = None) -> torch.Tensor:
    """The refiner ``net``'s corrections of where frame 0 and frame 1 are read, ``(N, 4, H, W)`` in pixels of the
    full frame (``size``), from ``refiner_input``'s arguments (``time_flow.time_warps`` calls it with the motion
    ``v`` and the ``trust``). ``keep``, if given, receives the motion it corrected and its correction at its own
    level (``motion``, ``delta``: ``(N, 4, h, w)`` each; for the training loss)."""
    x, motion = refiner_input(v, trust, grey0, grey1, flows, t, time_finest)
    delta = net(conv_input(x, net.head.weight)).float()
    if keep is not None:
        keep.update(motion=motion, delta=delta)
    return torch.cat([resize_flow(delta[:, :2], size), resize_flow(delta[:, 2:], size)], dim=1)


@torch.no_grad()
def privileged_motion(model: nn.Module, img0: torch.Tensor, img1: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Where the truth's pixels are in each input, as a ``Film`` model's own flow finds them from the truth:
    ``(N, 4, h, w)`` at pyramid level ``REFINER_LEVEL`` (u0 into frame 0, then u1 into frame 1; pixels of that
    level). The target of the refiner's motion, known only in training (RIFE's privileged teacher does this with a
    network)."""
    n = img0.shape[0]
    pyr = image_pyramid(torch.cat([truth, truth, img0, img1]).float(), model.config.pyramid_levels)
    feats = model.extractor(pyr)
    g = [grey(p) for p in pyr]
    head = [None if f is None else f[:2 * n] for f in feats]
    tail = [None if f is None else f[2 * n:] for f in feats]
    flows = model.flow(head, tail, [x[:2 * n] for x in g], [x[2 * n:] for x in g])
    u = resize_flow(flows[model.config.time_finest], g[REFINER_LEVEL].shape[-2:])
    return torch.cat([u[:n], u[n:]], dim=1)
