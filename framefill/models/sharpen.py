"""film's sharpener (``FilmConfig.sharpen_filters``): a learned choice, per pixel, of how each input is resampled.

Film reads each input between its pixels, along a motion that is right to a fraction of a pixel where it is right at
all, and samples it bilinearly: a read halfway between two pixels is their average, so every warped frame is blurred
by an amount that varies with where the read falls, and the line art and static detail of the validation items lose
most of their dB there. Bicubic sampling keeps that detail (+1.5 to +1.9 dB on the near-static 02_cups and the line
art) but overshoots where the motion is a pixel off: everywhere, it loses on 19 of 25 validation triplets, by up to
0.4 dB (``weights/README.md``, "The sharpener run"). Which one is right at a pixel is what the frames around it
say: how well the two reads agree, how consistent the flows are, how fast things move, how much detail there is.
Mean squared error favours a blur where a read is uncertain, even more than the bilinear one.

This stage reads that evidence at half resolution (the selector's, ``film_parts.selector_inputs``, and how far each
read's bicubic and blurred versions are from it) and gives per input two gains: one toward its bicubic read (negative:
away from it, a blur that follows the sub-pixel position) and one toward its 3x3 box blur. It comes after every
parameter-free step, and the selector and the rule read the plain reads as before, so nothing undoes it and a fresh
sharpener (zero head) leaves the model's output exactly as it was. Like MEMC-Net's adaptive warping layer (Bao et
al., TPAMI 2019), which learns the interpolation kernel along with the flow, but over two fixed kernels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.layers import ConvAct, box_filter, conv_output, grey, upsample2

SHARP_REACH = 1.5  # the largest gain toward (or away from) a read's bicubic version


class Sharpener(nn.Module):
    """Gains ``(N, 4, H / 2, W / 2)``: toward the bicubic read of frame 0, of frame 1 (in ``(-SHARP_REACH,
    SHARP_REACH)``), toward the blurred read of frame 0, of frame 1 (in [0, 1)), from ``(N, inputs, H / 2, W / 2)``
    evidence (``sharpen_evidence``). Zero head: zero gains, the plain reads."""

    DETAILS = 4  # evidence channels of its own, after the selector's

    def __init__(self, filters: int, inputs: int) -> None:
        super().__init__()
        f = 2 * filters
        self.inputs = inputs + self.DETAILS
        self.body = nn.Sequential(ConvAct(self.inputs, f), *(ConvAct(f, f, dilation=d) for d in (2, 4)), ConvAct(f, f))
        self.head = nn.Conv2d(f, 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = conv_output(self.head(self.body(x)))
        return torch.cat([SHARP_REACH * torch.tanh(z[:, :2]), (2 * torch.sigmoid(z[:, 2:]) - 1).clamp(min=0)], dim=1)


def sharpen_evidence(selector_inputs: torch.Tensor, reads: tuple[torch.Tensor, torch.Tensor],
                     bicubic: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """What ``Film.selector_evidence`` adds for a sharpener, from the selector's inputs (half resolution) and the two
    warped frames (``reads``) sampled bilinearly and ``bicubic``: the ``bicubic`` reads, their 3x3 box blurs
    (``blurred``: worked out once, read here and moved toward in ``sharpened``) and the sharpener's input ``sharpen``
    ``(N, inputs + Sharpener.DETAILS, H / 2, W / 2)``: the selector's and, per read, how far its bicubic and its
    blurred versions are from it (grey levels x 4, averaged over 2x2)."""
    blurred = tuple(box_filter(r, 3) for r in reads)
    details = [4 * grey(b - r).abs() for r, b in zip(reads + reads, bicubic + blurred, strict=True)]
    inputs = torch.cat([selector_inputs, F.avg_pool2d(torch.cat(details, dim=1), 2)], dim=1)
    return {"bicubic": bicubic, "blurred": blurred, "sharpen": inputs}


def sharpened(reads: tuple[torch.Tensor, ...], bicubic: tuple[torch.Tensor, torch.Tensor], gains: torch.Tensor,
              blurred: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
    """``reads`` (the candidates; the first two are the warped inputs) with those two moved by ``gains``
    (``Sharpener``'s, upsampled to their size) toward their ``bicubic`` versions and their 3x3 blurs (``blurred``,
    worked out here if not given)."""
    g = upsample2(gains, reads[0].shape[-2:])
    if blurred is None:
        blurred = tuple(box_filter(r, 3) for r in reads[:2])
    moved = tuple(r + g[:, k:k + 1].expand_as(r) * (b - r) + g[:, 2 + k:3 + k].expand_as(r) * (s - r)
                  for k, (r, b, s) in enumerate(zip(reads[:2], bicubic, blurred, strict=True)))
    return moved + tuple(reads[2:])
