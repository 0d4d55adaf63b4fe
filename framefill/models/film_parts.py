"""FILM's stages, one module each (``framefill.models.film`` assembles them into ``Film``; its docstring fixes the
conventions): the cascaded feature extractor, the pyramid flow estimator with its Lucas-Kanade refinement, and
the U-Net fusion decoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.film_config import FilmConfig
from framefill.models.layers import (
    ConvAct,
    box_filter,
    conv_input,
    conv_output,
    fb_consistency,
    grey,
    lucas_kanade_step,
    resize_flow,
    search_flow,
    upsample2,
    warp,
)


class FeatureExtractor(nn.Module):
    """Cascaded feature pyramid shared across scales.

    Shape:
        input: image pyramid, finest first, level j ``(N, 3, H / 2**j, W / 2**j)``.
        output: feature pyramid, level j ``(N, channels(j), H / 2**j, W / 2**j)``.
    """

    def __init__(self, *, filters: int, sub_levels: int, skip_levels: int = 0) -> None:
        super().__init__()
        self.sub_levels = sub_levels
        self.skip_levels = skip_levels
        self.blocks = nn.ModuleList()
        cin = 3
        for d in range(sub_levels):
            cout = filters << d
            self.blocks.append(nn.Sequential(ConvAct(cin, cout), ConvAct(cout, cout)))
            cin = cout
        self.filters = filters

    def channels(self, level: int) -> int:
        """Channels of the cascaded feature at pyramid ``level`` (0 for skipped levels)."""
        if level < self.skip_levels:
            return 0
        return sum(self.filters << d for d in range(min(level - self.skip_levels, self.sub_levels - 1) + 1))

    def forward(self, pyramid: list[torch.Tensor]) -> list[torch.Tensor | None]:
        levels = len(pyramid)
        weight = self.blocks[0][0][0].weight  # the convolutions run in the weights' precision and layout
        per_level: list[list[torch.Tensor]] = [[] for _ in range(levels)]  # per_level[j] gets depth-d features
        for i, img in enumerate(pyramid):
            if i < self.skip_levels:
                continue
            x = conv_input(img, weight)
            for d in range(min(self.sub_levels, levels - i)):
                if d > 0:
                    x = nn.functional.avg_pool2d(x, 2)
                x = self.blocks[d](x)
                per_level[i + d].append(x)
        return [torch.cat(feats, dim=1) if feats else None for feats in per_level]


def confidence_mean(flow: torch.Tensor, conf: torch.Tensor, mismatch: Callable[[torch.Tensor], torch.Tensor],
                    cfg: FilmConfig, scale: torch.Tensor | None = None) -> torch.Tensor:
    """The confidence-weighted local mean of a flow (normalised convolution over ``cfg.lk_smooth``): textured
    pixels that the flow matches well speak for their flat or mismatched neighbours, so flow spreads from where
    it is measured into where it is not, and less across motion boundaries than a plain box mean.

    ``conf``: the structure tensor's smaller eigenvalue (``lucas_kanade_step(..., with_confidence=True)``);
    ``mismatch(flow)``: the grey-level difference the flow leaves (residuals over ``cfg.lk_sigma`` lower a
    pixel's weight); ``scale`` ``(N, 1, H, W)``: a learned factor on each pixel's weight (``LKWeights``).
    """
    if cfg.lk_smooth <= 1:
        return flow
    if not cfg.lk_sigma:
        return box_filter(flow, cfg.lk_smooth)
    residual = mismatch(flow).abs() / cfg.lk_sigma
    weight = (conf + 1e-5) / (1 + residual * residual)
    if scale is not None:
        weight = weight * scale
    return box_filter(weight * flow, cfg.lk_smooth) / box_filter(weight, cfg.lk_smooth)


class LKWeights(nn.Module):
    """Learned per-pixel weights inside each Lucas-Kanade update: how much a pixel counts in its neighbours'
    normal equations, and in the confidence-weighted mean after the update. Training steers the fixed point that
    the parameter-free steps converge to, instead of adding a correction that the next step solves away (the
    film issue's diagnosis: a residual at pyramid level 3-5 survives the next levels' updates 0-13%).

    The same small network at every level (its inputs do not depend on the level's features): the grey image A
    and B warped to it, normalised by A's local contrast, their difference, that contrast and the flow's last
    update. It gives two log-weights, clamped to +-4; its head starts at zero, so the weights start at one and
    the flow is the parameter-free one exactly until it is trained (``framefill train --lk-weights N``).
    """

    def __init__(self, filters: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(6, filters, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(filters, filters, 3, padding=2, dilation=2), nn.LeakyReLU(0.1),
            nn.Conv2d(filters, filters, 3, padding=1), nn.LeakyReLU(0.1))
        self.head = nn.Conv2d(filters, 2, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, a: torch.Tensor, b_warped: torch.Tensor, step: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights ``(N, 1, h, w)`` of the update's data term and of the mean after it (float32)."""
        mu = box_filter(a, 7)
        sd = (box_filter(a * a, 7) - mu * mu).clamp_min(0).sqrt() + 0.02
        x = torch.cat([(a - mu) / sd, (b_warped - mu) / sd, (a - b_warped).abs() / sd, 10 * sd, step.clamp(-4, 4)],
                      dim=1)
        w = self.head(self.body(conv_input(x, self.head.weight))).float().clamp(-4, 4).exp()  # from log-weights
        return w[:, :1], w[:, 1:]


class FlowLevel(nn.Module):
    """One level's learned residual flow from (features A, features B warped to A): FILM's conv stack."""

    def __init__(self, *, channels: int, filters: int, convs: int) -> None:
        super().__init__()
        layers = [ConvAct(2 * channels, filters)] + [ConvAct(filters, filters) for _ in range(convs - 1)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(filters, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feat_a: torch.Tensor, feat_b_warped: torch.Tensor) -> torch.Tensor:
        x = conv_input(torch.cat([feat_a, feat_b_warped], dim=1), self.out.weight)
        return conv_output(self.out(self.body(x)))  # (N, 2, h, w) float32


class PyramidFlowEstimator(nn.Module):
    """Coarse-to-fine residual flow; the finest levels are specialised, coarser ones share weights.

    ``forward(fa, fb)`` returns the flow pyramid (finest first) mapping A's grid into B:
    ``A[y, x] ~ B[y + dy, x + dx]``.
    """

    def __init__(self, cfg: FilmConfig, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.cfg = cfg
        self.weights = LKWeights(cfg.lk_weight_filters) if cfg.lk_weight_filters else None
        first = cfg.skip_levels
        self.specialized = nn.ModuleList(
            FlowLevel(channels=extractor.channels(first + j), filters=cfg.flow_filters, convs=cfg.flow_convs)
            for j in range(cfg.specialized_levels)
        )
        self.shared = FlowLevel(
            channels=extractor.channels(first + cfg.specialized_levels), filters=cfg.flow_filters, convs=cfg.flow_convs
        )

    def _level(self, j: int) -> FlowLevel:
        j -= self.cfg.skip_levels
        return self.specialized[j] if j < len(self.specialized) else self.shared

    def forward(self, fa: list[torch.Tensor | None], fb: list[torch.Tensor | None], ga: list[torch.Tensor],
                gb: list[torch.Tensor], plain: bool = False) -> list[torch.Tensor]:
        """``fa``/``fb``: feature pyramids of A and B; ``ga``/``gb``: their grey image pyramids (Lucas-Kanade).
        ``plain``: the Lucas-Kanade updates without the learned weights (``LKWeights``), as if it had none."""
        levels = len(fa)
        coarsest = ga[-1]
        flow = coarsest.new_zeros(coarsest.shape[0], 2, *coarsest.shape[-2:])  # float32 like the grey images
        flows: list[torch.Tensor] = [flow] * levels
        cfg = self.cfg
        learned = None if plain else self.weights
        for j in range(levels - 1, -1, -1):
            if j < levels - 1:
                flow = resize_flow(flow, ga[j].shape[-2:])
            if cfg.search_radius and j >= cfg.search_finest:
                flow = search_flow(ga[j], gb[j], flow, cfg.search_radius, cfg.search_window, cfg.search_ratio)
            iters = cfg.lk_iters if fa[j] is not None else cfg.lk_fine_iters if j >= cfg.lk_finest else 0
            step = None if learned is None else torch.zeros_like(flow)  # the weights read the last update
            for _ in range(iters):
                b_warped = warp(gb[j], flow)
                data_w, mean_w = (None, None) if learned is None else learned(ga[j], b_warped, step)
                step, conf = lucas_kanade_step(ga[j], b_warped, cfg.lk_window, cfg.lk_damping, with_confidence=True,
                                               weight=data_w)
                flow = confidence_mean(flow + step, conf, lambda f, a=ga[j], b=gb[j]: a - warp(b, f), cfg, mean_w)
            if fa[j] is not None:
                flow = flow + self._level(j)(fa[j], warp(fb[j], flow))
            flows[j] = flow
        return flows


class Fusion(nn.Module):
    """U-Net decoder from the coarsest fused level up to full resolution.

    Level j input: warped images (2 x 3), warped features (2 x C_j), scaled flows (2 x 2), and with
    ``fusion_cues`` the ``CUES`` occlusion cues (average-pooled to the level).
    Head: 1 mask logit + 3 residual channels at full resolution, and with ``fusion_cues`` a fifth: an offset to
    the fallback's logit.
    """

    CUES = 4  # |warped 0 - warped 1|, the fallback weight, and the two flows' forward-backward consistency at t

    def __init__(self, cfg: FilmConfig, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.levels = cfg.fusion_levels
        width = [min(cfg.fusion_filters << j, cfg.fusion_max_filters) for j in range(self.levels)]
        # Per level: warped images, warped features and scaled flows of both inputs (the cues come after them).
        self.level_inputs = [2 * 3 + 2 * extractor.channels(j) + 2 * 2 for j in range(self.levels)]
        in_ch = [c + (self.CUES if cfg.fusion_cues else 0) for c in self.level_inputs]
        self.reduce = nn.ModuleList()  # coarser decoder output -> this level's width, then upsampled
        self.blocks = nn.ModuleList()
        for j in range(self.levels):
            up = width[j + 1] if j + 1 < self.levels else 0
            if up:
                self.reduce.append(ConvAct(up, width[j], 1))
            else:
                self.reduce.append(nn.Identity())
            self.blocks.append(nn.Sequential(ConvAct(in_ch[j] + (width[j] if up else 0), width[j]),
                                             ConvAct(width[j], width[j])))
        self.head = nn.Conv2d(width[0], 5 if cfg.fusion_cues else 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = None
        for j in range(self.levels - 1, -1, -1):
            level_in = inputs[j]
            if x is not None:
                # 1x1 channel reduction before the upsampling: the same decoder, 4x fewer full-size copies.
                x = upsample2(self.reduce[j](x), level_in.shape[-2:])
                level_in = torch.cat([level_in, x], dim=1)
            x = self.blocks[j](level_in)
        return conv_output(self.head(x))  # (N, 4 or 5, H, W) float32


class Selector(nn.Module):
    """Learned weights of the three candidates for each pixel of the output: warped frame 0, warped frame 1 and
    the plain blend of the inputs (``FilmConfig.selector_filters``).

    The parameter-free path decides between them by a fixed rule (the fusion's mask between the warped frames,
    the blend fallback where they disagree more than the inputs do over a fixed window); that rule is right on
    most camera footage and wrong where a motion is larger than its window (thin lines that moved far are blended
    away) or where one input is hidden (the blend doubles the object). This small U-Net reads cheap per-pixel
    evidence at half resolution (``INPUTS`` channels, see ``selector_inputs``) and adds logits to the rule's,
    so it starts as the rule (zero head) and a step trains only it: the flows and warps it judges are fixed.

    With ``unwarped`` it chooses between five: the two inputs as they are come after the three, and it reads
    ``UNWARPED_INPUTS`` more channels (how far each input is from its warp). The rule never picks them; a trained
    selector does where a warp only loses: held drawings, static detail that a sub-pixel warp blurs, a flow that
    went astray where nothing moved.

    Shape: input ``(N, INPUTS (+ UNWARPED_INPUTS), H / 2, W / 2)``, H and W multiples of 32; output
    ``(N, 3 or 5, H / 2, W / 2)`` logits.
    """

    INPUTS = 12
    UNWARPED_INPUTS = 2

    def __init__(self, filters: int, unwarped: bool = False) -> None:
        super().__init__()
        f = filters
        self.unwarped = unwarped
        self.inputs = self.INPUTS + (self.UNWARPED_INPUTS if unwarped else 0)
        self.choices = 5 if unwarped else 3
        self.enc = nn.ModuleList([
            ConvAct(self.inputs, f),  # 1/2
            nn.Sequential(nn.AvgPool2d(2), ConvAct(f, 2 * f), ConvAct(2 * f, 2 * f)),  # 1/4
            nn.Sequential(nn.AvgPool2d(2), ConvAct(2 * f, 2 * f), ConvAct(2 * f, 2 * f)),  # 1/8
            nn.Sequential(nn.AvgPool2d(2), ConvAct(2 * f, 2 * f), ConvAct(2 * f, 2 * f)),  # 1/16: far motion's context
        ])
        self.dec = nn.ModuleList([ConvAct(4 * f, 2 * f), ConvAct(4 * f, 2 * f), ConvAct(3 * f, f)])  # 1/8, 1/4, 1/2
        self.head = nn.Conv2d(f, self.choices, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def widened(self) -> Selector:
        """This selector with the unwarped inputs as two more choices and its extra input channels, the new
        weights zero: the same offsets for the first three choices as before."""
        new = Selector(self.head.in_channels, unwarped=True).to(self.head.weight.device)
        state = self.state_dict()
        first = "enc.0.0.weight"
        w = state[first]
        state[first] = torch.cat([w, w.new_zeros(w.shape[0], self.UNWARPED_INPUTS, *w.shape[2:])], dim=1)
        state["head.weight"] = torch.cat([state["head.weight"], new.head.weight.detach()[3:]])
        state["head.bias"] = torch.cat([state["head.bias"], new.head.bias.detach()[3:]])
        new.load_state_dict(state)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.dec:
            skip = skips.pop()
            x = block(torch.cat([upsample2(x, skip.shape[-2:]), skip], dim=1))
        return conv_output(self.head(x))  # float32

    def offset(self, ev: dict) -> torch.Tensor:
        """Its offsets ``(N, K, H / 2, W / 2)``, float32, from ``Film.selector_evidence``'s ``ev`` (or its cache)."""
        return self(conv_input(ev["inputs"], self.head.weight))


def selector_inputs(cfg: FilmConfig, img0: torch.Tensor, img1: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor,
                     blend: torch.Tensor, fallback_logit: torch.Tensor, flow: torch.Tensor, half: torch.Tensor
                     ) -> torch.Tensor:
    """The selector's evidence at half resolution, ``(N, Selector.INPUTS, H / 2, W / 2)`` float32: the three
    candidates (grey), how far each pair of them disagrees, how far the inputs do, the fallback rule's margin
    (grey levels), each input's forward-backward consistency at time t and the length of its motion (pixels
    of the full frame / 16); with ``selector_unwarped`` ``Selector.UNWARPED_INPUTS`` more: how far each input is
    from its warp. ``flow``/``half``: pyramid level 1 of the flows and of their share at t."""
    n = w0.shape[0]
    g0, g1, gb = grey(w0), grey(w1), grey(blend)
    parts = [g0 - 0.5, g1 - 0.5, gb - 0.5, 4 * (g0 - g1).abs(), 4 * (g0 - gb).abs(), 4 * (g1 - gb).abs(),
             4 * grey(img0 - img1).abs(), fallback_logit * (4 * cfg.fallback_temp)]
    if cfg.selector_unwarped:  # how far each input is from its warp: near zero where nothing moved
        parts += [4 * (grey(img0) - g0).abs(), 4 * (grey(img1) - g1).abs()]
    full = torch.cat(parts, dim=1)
    flow_10, flow_01 = flow[:n], flow[n:]
    consistency = fb_consistency(torch.cat([flow_01, flow_10]), torch.cat([flow_10, flow_01]),
                                 cfg.vis_sigma)
    at_t = warp(consistency, half)  # (2N, 1, h, w): frame 0's rows, then frame 1's
    motion = half.square().sum(1, keepdim=True).sqrt() / 8  # (2 x pixels of level 1) / 16
    pooled = F.avg_pool2d(full, 2)  # the unwarped channels last, so that a widened selector's first conv reads the
    # first twelve where it always did (Selector.widened appends zero weights)
    return torch.cat([pooled[:, :8], at_t[:n], at_t[n:], motion[:n], motion[n:], pooled[:, 8:]], dim=1)
