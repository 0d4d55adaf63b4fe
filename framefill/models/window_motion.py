"""convlstm's window motion: where four frames know the motion at t = 0.5 better than two, a learned gate moves
film's reads there.

Film reads I1 and I2 along a straight path: the frame halfway between them shows what sits halfway along the
chord. Anything that speeds up, slows down or turns is elsewhere at t = 0.5: with an acceleration ``a`` (pixels per
frame interval squared, the second difference of its positions) it is ``a / 8`` behind the chord's middle, so both
reads are off by that. The outer frames measure ``a``: on I1's grid ``a1 = f_12 + f_10`` (its flows into I2 and
into I0), on I2's grid ``a2 = f_21 + f_23``; each is carried to the output's grid along film's motion.

Applied everywhere, that correction is right where the flows into the outer frames are (a panning camera that
speeds up, a ball in flight) and wrong where they are noise, which a second difference of two flows doubles, and
on animation drawn on twos, whose held drawings are no motion at all. Where it helps is what this stage learns: a
small network reads, at a quarter of the resolution, the two estimates, how they disagree, how consistent each
flow is forward and backward, how far things move between each pair and how much texture there is, and outputs a
gate ``g`` in [0, 1]; film's reads of both inputs move by ``g a / 8`` (``Film(read_shift=...)``). Its head starts
at zero, so an untrained gate is closed and the model is film exactly.

With ``trajectory`` (``ConvLSTMConfig.window_trajectory``) it also reads how well the two paths explain the outer
frames themselves: each output pixel's straight path through I1 and I2 extended to I0 and I3 (1.5 intervals out),
and the curved one the correction implies (I1 and I2 read ``a / 8`` further, I0 and I3 ``9 a / 8`` further), each
scored by how far the outer frame's read is from its neighbour's. Where the curve explains I0 and I3 and the line
does not, the acceleration is real; where both do (no texture to tell) or neither (the flows into the outer frames
are wrong), it is not evidence. A flow can be confidently wrong; these reads check it against the pixels.

The flows are film's own flow estimator run on the window's three pairs at half resolution (an acceleration
varies slowly), and everything the gate reads is worked out at its level: a quarter of the resolution, or with
``ConvLSTMConfig.window_level`` 1 the half at which the flows are estimated. An outer frame that is a
copy of its neighbour (a clip's end, a cut, a duplicate: ``framefill.windows``) measures nothing: its side's
estimate is left out, and with neither, the correction is zero.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.layers import ConvAct, box_filter, crop, grey, pad_to_multiple, resize_flow, warp

LEVEL = 2  # by default the gate runs at 1 / 2**LEVEL of the resolution (``ConvLSTMConfig.window_level``: 1 or 2)


class WindowGate(nn.Module):
    """The gate ``(N, 1, h, w)`` in [0, ``reach``] from ``window_evidence``'s ``(N, inputs, h, w)``: ``reach`` times
    ``2 (sigmoid(z) - 0.5)`` clamped at 0, ``z`` from a zero head, so that it starts closed and a gradient still
    opens it. A ``reach`` above 1 lets it move the reads further than ``a / 8`` where the flows of the outer pairs,
    estimated at half resolution and smoothed, measure less acceleration than there is."""

    INPUTS = 16
    TRAJECTORY_INPUTS = 4  # with ``trajectory``: the straight and the curved path's errors at I0 and at I3

    def __init__(self, filters: int, reach: float = 1.0, trajectory: bool = False) -> None:
        super().__init__()
        self.reach = reach
        self.inputs = self.INPUTS + (self.TRAJECTORY_INPUTS if trajectory else 0)
        self.body = nn.Sequential(ConvAct(self.inputs, filters),
                                  *(ConvAct(filters, filters, dilation=d) for d in (2, 4)), ConvAct(filters, filters))
        self.head = nn.Conv2d(filters, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reach * (2 * torch.sigmoid(self.head(self.body(x))) - 1).clamp(min=0)


def _fb(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Forward-backward inconsistency ``|f + b(x + f)|`` of a flow ``f`` and its reverse ``b``, ``(N, 1, h, w)``."""
    return (forward + warp(backward, forward)).norm(dim=1, keepdim=True)


def window_flows(film: nn.Module, frames: torch.Tensor, level: int = LEVEL) -> tuple[torch.Tensor, ...]:
    """Film's flows of the window's three pairs, estimated at half resolution and returned at the gate's ``level``
    (in pixels of that level), each ``(N, 2, H / 2**level, W / 2**level)``: ``f_21`` (I2's grid into I1), ``f_12``,
    ``f_10`` (I1's grid into I0), ``f_01``, ``f_23`` (I2's grid into I3), ``f_32``. ``frames``: ``(N, 4, 3, H, W)``."""
    n, size = frames.shape[0], frames.shape[-2:]
    half = F.avg_pool2d(frames.flatten(0, 1), 2).view(n, 4, 3, size[0] // 2, size[1] // 2)
    first, hw = pad_to_multiple(torch.cat([half[:, 1], half[:, 0], half[:, 2]]), film.divisor)  # I1, I0, I2
    second, _ = pad_to_multiple(torch.cat([half[:, 2], half[:, 1], half[:, 3]]), film.divisor)  # I2, I1, I3
    flows = film.flow_pyramids(first, second)[3][0]  # (6N, 2, h, w): flow_10 of each pair, then flow_01 of each
    f = resize_flow(crop(flows, hw), (size[0] >> level, size[1] >> level)).split(n)
    return f[0], f[3], f[1], f[4], f[5], f[2]


def window_evidence(frames: torch.Tensor, flows: tuple[torch.Tensor, ...], valid: torch.Tensor,
                    trajectory: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The gate's inputs ``(N, WindowGate(..., trajectory).inputs, h, w)`` (the flows' size) and the correction it gates
    (``a / 8``) on the output's grid ``(N, 2, H, W)`` (pixels of the full frame; zero where neither outer frame is
    valid). All of it is worked out at the gate's level, where the flows are given; with ``trajectory``, the last
    inputs are ``path_errors``.

    ``flows``: ``window_flows``' six (``I1[y] ~ I2[y + f_12]`` and so on); ``valid``: ``(N, 2, 1, 1)`` float, whether
    I0 and I3 are real frames (not copies)."""
    f21, f12, f10, f01, f23, f32 = flows
    v = 0.5 * (f12 - f21)  # the motion I1 -> I2 about the output's pixels (the two flows, averaged)
    to1, to2 = -0.5 * v, 0.5 * v  # where I1 and I2 are read about the output's pixels
    w1, w2 = valid[:, :1], valid[:, 1:]
    a1 = warp(f12 + f10, to1) / 8 * w1  # I1's estimate, carried to the output's grid
    a2 = warp(f21 + f23, to2) / 8 * w2  # I2's
    a = (a1 + a2) / (w1 + w2).clamp(min=1)
    fb_mid = warp(_fb(f12, f21), to1)
    fb1, fb2 = warp(_fb(f10, f01), to1) * w1, warp(_fb(f23, f32), to2) * w2
    outer1, outer2 = warp(f10, to1).norm(dim=1, keepdim=True) * w1, warp(f23, to2).norm(dim=1, keepdim=True) * w2
    g1 = grey(warp(F.adaptive_avg_pool2d(frames[:, 1], v.shape[-2:]), to1))
    texture = box_filter((g1 - box_filter(g1, 5)).abs(), 5)
    x = torch.cat([4 * a1, 4 * a2, 4 * a, 4 * (a1 - a2).norm(dim=1, keepdim=True) * w1 * w2, 0.4 * fb_mid, 0.4 * fb1,
                   0.4 * fb2, 0.2 * v.norm(dim=1, keepdim=True), 0.2 * outer1, 0.2 * outer2, 10 * texture,
                   valid.expand(-1, -1, *v.shape[-2:])], dim=1)
    if trajectory:
        x = torch.cat([x, 10 * path_errors(frames, v, a, valid)], dim=1)
    return x, resize_flow(a, frames.shape[-2:])


def path_errors(frames: torch.Tensor, v: torch.Tensor, a: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """How far I0 and I3 are from I1 and I2 along each output pixel's straight path and along the curved path of the
    correction ``a`` (``a / 8`` at the gate's level), ``(N, 4, h, w)``: straight at I0, curved at I0, straight at I3,
    curved at I3 (grey levels, averaged over 5 x 5; zero for an outer frame that is a copy). ``v``: the motion
    I1 -> I2 about the output's pixels, at the gate's level."""
    size = v.shape[-2:]
    g0, g1, g2, g3 = (grey(F.adaptive_avg_pool2d(frames[:, k], size)) for k in range(4))
    w1, w2 = valid[:, :1], valid[:, 1:]

    def error(outer: torch.Tensor, to_outer: torch.Tensor, inner: torch.Tensor, to_inner: torch.Tensor) -> torch.Tensor:
        return box_filter((warp(outer, to_outer) - warp(inner, to_inner)).abs(), 5)

    # A path through the output pixel at t = 0.5 reaches I1 at -v / 2 (+ a), I0 at -1.5 v (+ 9 a), and so on.
    return torch.cat([error(g0, -1.5 * v, g1, -0.5 * v) * w1, error(g0, -1.5 * v + 9 * a, g1, -0.5 * v + a) * w1,
                      error(g3, 1.5 * v, g2, 0.5 * v) * w2, error(g3, 1.5 * v + 9 * a, g2, 0.5 * v + a) * w2], dim=1)


def read_shift(gate: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Film's ``read_shift`` ``(N, 4, H, W)`` from the gate ``(N, 1, h, w)`` and ``a / 8`` ``(N, 2, H, W)``: both
    reads move by the gated correction."""
    shift = F.interpolate(gate, size=a.shape[-2:], mode="bilinear", align_corners=False) * a
    return torch.cat([shift, shift], dim=1)
