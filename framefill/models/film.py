"""A FILM-style frame interpolator (Reda et al., "FILM: Frame Interpolation for Large Motion", ECCV 2022).

The network predicts the frame halfway between two frames (t = 0.5: the scheduler recurses for
other times), or, trained with ``--arbitrary-time``, the frame at any time t between them. Its four
stages, one ``nn.Module`` each (the first, second and fourth in ``framefill.models.film_parts``):

1. ``FeatureExtractor``: a *cascaded* feature pyramid. The same small conv stack (``sub_levels``
   deep, pooling 2x between depths) runs on every level of the image pyramid; the feature at pyramid
   level ``j`` concatenates depth ``d`` of image level ``j - d`` for every available ``d``. Deep
   (coarse) levels therefore see features computed with weights shared across scales, which is what
   lets a network trained on small motion resolve large motion at coarse levels.
2. ``PyramidFlowEstimator``: coarse-to-fine residual flow. At each level the upsampled flow is first
   refined by ``lk_iters`` damped Lucas-Kanade steps on the grey images, each followed by a smoothing
   of the flow (parameter-free: a windowed least-squares update and a smoothness prior), then the
   other frame's features are backward-warped by it and a small conv stack predicts a learned residual.
   The finest ``specialized_levels`` feature levels own their estimator; all coarser levels share one
   (same channel count there because ``specialized_levels >= sub_levels - 1``). It runs in both
   directions. For speed the finest ``skip_levels`` levels get no features and no learned residual,
   and the cascade starts at pyramid level ``skip_levels``; Lucas-Kanade refines them with
   ``lk_fine_iters`` steps down to level ``lk_finest`` (1: half resolution), below which the flow is
   only upsampled. After each update the flow is replaced by its confidence-weighted local mean
   (normalised convolution; confidence = the structure tensor's smaller eigenvalue, lowered where the
   warped frames still differ), which spreads flow from textured, well-matched pixels into flat ones.
   With ``search_radius``, the levels down to ``search_finest`` first take the best whole-pixel step within it
   where it matches clearly better (``layers.search_flow``): it finds what the coarse levels blurred away.
   With ``lk_weight_filters``, a learned network (``LKWeights``) weighs each pixel inside both, so training
   moves the point the parameter-free updates converge to instead of a residual that the next level undoes.
3. Warping: image and feature pyramids of frame 0 are backward-warped by ``t * flow_10`` (flow that
   maps frame 1's grid into frame 0; t = 0.5 by default), those of frame 1 by ``(1 - t) * flow_01``:
   FILM's approximation of the flow at time t by the flow anchored at the other end. At full resolution the
   images are instead warped along one motion per pixel of the frame at time t, matched so that the two inputs
   agree along it (``framefill.models.time_flow``, ``time_levels``), wherever both flows pass the
   forward-backward check. With ``refiner_filters``, a learned stage (``framefill.models.refiner``) then corrects
   where each input is read, after the last parameter-free step of the motion.
4. ``Fusion``: a U-Net decoder over the ``fusion_levels`` finest levels of (warped images, warped
   features, scaled flows). Unlike FILM, which regresses the image, its head predicts a blend mask
   and an RGB residual: ``out = m * w0 + (1 - m) * w1 + r``. That trains faster from scratch and
   lets the network pick the unoccluded side. Before the residual, a parameter-free fallback moves
   toward the blend of the two inputs at t wherever the warped frames disagree more than the
   unwarped ones (``FilmConfig.fallback_window``): failed matches and static areas that sub-pixel
   warping would only blur. With ``selector_filters`` a learned selector moves the fallback rule's weights of the
   two warped frames and the blend per pixel; with ``sharpen_filters`` a learned sharpener first chooses how each
   warped frame is resampled (``framefill.models.sharpen``: bilinear, toward bicubic, toward a blur).

Conventions: pyramids finest first; flow in pixels of its level, channel 0 = dx; images (N, 3, H, W)
in [0, 1].

Size divisibility: H and W must be multiples of ``2 ** (pyramid_levels - 1)`` (``FilmConfig.divisor``);
the scheduler pads and crops back. Largest motion: each level corrects about ``flow_radius`` pixels of
its own level around the upsampled flow (about half the Lucas-Kanade window: 4 for ``film-s``), so the
pyramid resolves about ``flow_radius * (2 ** pyramid_levels - 1)`` pixels between the two inputs
(``FilmConfig.max_motion``: 252 px for ``film-s``); the pyramid depth is the knob for bigger motion, at
no cost in weights, since the coarse levels share one estimator.

Beyond FILM, for a CPU training budget: FILM's flow estimator learns to find flow only after long training (on our
CPU budget it stayed at zero for 1,000 steps and the model was a plain blend; a soft-argmax cost volume, tried next,
gave arbitrary motion in flat regions and at borders). Damped Lucas-Kanade steps are exactly zero for identical
frames, sub-pixel accurate on texture and near zero without it, so the network starts from a working coarse-to-fine
flow and learns corrections, occlusion masks and the fusion on top. Iterating them with a smoothing of the flow in
between is what made that flow good: on the 20 validation triplets of ``make compare`` (stride 1 / stride 2,
untrained model), one step per level with a 5-pixel window gave 26.97 / 23.64 dB; 8 steps with a 9-pixel window and
a box mean 28.08 / 23.73; with the confidence-weighted mean 28.32 / 23.77; adding the blend fallback 28.41 / 24.12
(``tools/lk_sweep.py``; the settings were chosen on triplets of the training clips).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.film_config import FilmConfig  # re-exported: film's public config
from framefill.models.film_parts import FeatureExtractor, Fusion, PyramidFlowEstimator, Selector, selector_inputs
from framefill.models.layers import box_filter, conv_input, fb_consistency, grey, image_pyramid, upsample2, warp
from framefill.models.refiner import MotionRefiner, corrections
from framefill.models.sharpen import Sharpener, sharpen_evidence, sharpened
from framefill.models.time_flow import shifted, time_warps


class Film(nn.Module):
    """FILM-style interpolator: ``model(img0, img1)`` is the frame at t = 0.5, ``model(img0, img1, t)`` the
    frame at time ``t`` (a float or an ``(N,)`` tensor in [0, 1]).

    Time enters as FILM's linear motion model: frame 0 is warped by ``t * flow_10``, frame 1 by
    ``(1 - t) * flow_01``, the fusion sees those scaled flows and the blend fallback is ``lerp(img0, img1, t)``.
    Only a model trained at many times (``config.arbitrary_time``) is asked by the scheduler for t other than 0.5.

    Shape:
        img0, img1: ``(N, 3, H, W)`` in [0, 1], H and W multiples of ``config.divisor``.
        output: ``(N, 3, H, W)`` in [0, 1]. ``forward(..., return_aux=True)`` also returns a dict with
        the flow pyramids, the image pyramid of both inputs and the warped images (for losses and debugging).
    """

    times = (0.5,)  # the time it is always trained for; the scheduler recurses for others unless arbitrary_time
    BLEND_RAISE = 2.0  # the most a selector may raise the blend's odds against both warped frames (logits)
    ABSENT = -12.0  # the logit of a candidate the rule never picks (the inputs as they are) below the others' total

    def __init__(self, config: FilmConfig | None = None) -> None:
        super().__init__()
        self.config = config or FilmConfig()
        self.extractor = FeatureExtractor(filters=self.config.filters, sub_levels=self.config.sub_levels,
                                          skip_levels=self.config.skip_levels)
        self.flow = PyramidFlowEstimator(self.config, self.extractor)
        self.fusion = Fusion(self.config, self.extractor)
        self.selector = (Selector(self.config.selector_filters, unwarped=self.config.selector_unwarped)
                         if self.config.selector_filters else None)
        self.refiner = MotionRefiner(self.config.refiner_filters) if self.config.refiner_filters else None
        self.sharpener = (Sharpener(self.config.sharpen_filters, self.selector.inputs)
                          if self.config.sharpen_filters else None)
        self.selector_only = False  # training the selector alone: everything before it runs without autograd
        self.refined: dict = {}  # the refiner's last motion and correction at its level (aux; the training loss)
        self.trust_fixed: float | None = None  # one trust in the matching at t everywhere (tools/time_pairs.py --trust)

    @property
    def divisor(self) -> int:
        return self.config.divisor

    @property
    def arbitrary_time(self) -> bool:
        return self.config.arbitrary_time

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor | float | None = None,
                return_aux: bool = False, read_shift: torch.Tensor | None = None):
        cfg = self.config
        if img0.shape != img1.shape or img0.dim() != 4 or img0.shape[1] != 3:
            raise ValueError(f"Film needs two (N, 3, H, W) images of one shape; got {tuple(img0.shape)} and "
                             f"{tuple(img1.shape)}")
        h, w = img0.shape[-2:]
        if h % cfg.divisor or w % cfg.divisor:
            raise ValueError(f"Film input {h}x{w} is not a multiple of {cfg.divisor}; pad it first "
                             "(framefill.models.layers.pad_to_multiple)")
        n, in_dtype = img0.shape[0], img0.dtype
        t = _times(t, n, img0.device)  # (N, 1, 1, 1) float32
        img0, img1 = img0.float(), img1.float()
        if self.selector is not None:  # the rule's weights of (warped 0, warped 1, blend), moved by the selector
            ev = self.selector_evidence(img0, img1, t, read_shift)
            out, choice = self.compose(ev, self.selector.offset(ev), self.sharpen_gains(ev))
            head, flows, pyr = ev["head"], ev["flows"], ev["pyramid"]
            w0_img, w1_img, blend = ev["candidates"][:3]
            mask = fallback = None  # (for the aux below only: the output does not need them)
        else:
            head, flows, pyr, w0_img, w1_img, fallback_logit, _ = self._base(img0, img1, t, read_shift)
            blend, choice, fallback = torch.lerp(img0, img1, t), None, None
            mask = torch.sigmoid(head[:, :1])
            base = torch.lerp(w1_img, w0_img, mask)  # mask * w0 + (1 - mask) * w1
            if fallback_logit is not None:
                fallback = torch.sigmoid(fallback_logit)
                base = torch.lerp(base, blend, fallback)
            out = (base + head[:, 1:4]).clamp(0, 1)
        out = out.to(in_dtype)
        if return_aux:
            if choice is not None:  # the selector's weight of the blend stands for the fallback's
                mask, fallback = torch.sigmoid(head[:, :1]), torch.softmax(choice, dim=1)[:, 2:3]
            candidates = ev["candidates"] if choice is not None else (w0_img, w1_img, blend)
            return out, {"candidates": candidates, "flows": flows, "pyramid": pyr, "warped0": w0_img,
                         "warped1": w1_img, "mask": mask, "fallback": fallback, "time": t, "blend": blend,
                         "choice": choice, "refined": self.refined}
        return out

    def selector_evidence(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor,
                          read_shift: torch.Tensor | None = None) -> dict:
        """Everything the selector chooses from and reads, for float32 inputs and times ``(N, 1, 1, 1)``:
        ``candidates`` (warped frame 0, warped frame 1, the blend, and with ``selector_unwarped`` the two inputs;
        ``(N, 3, H, W)`` each), the fixed rule's logits ``rule`` ``(N, 3, H, W)`` (of the first three), the fusion's
        ``residual`` ``(N, 3, H, W)``, the selector's ``inputs`` (``film_parts.selector_inputs``) and, for losses and
        debugging, the fusion's ``head``, the ``flows`` and the image ``pyramid``. Without autograd while
        ``selector_only``: a cache of it stands for the whole model in a selector's training step (``compose``)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.selector_only):
            head, flows, pyr, w0_img, w1_img, fallback_logit, bicubic = self._base(img0, img1, t, read_shift)
            blend = torch.lerp(img0, img1, t)
            rule = torch.cat([F.logsigmoid(-fallback_logit) + F.logsigmoid(head[:, :1]),
                              F.logsigmoid(-fallback_logit) + F.logsigmoid(-head[:, :1]),
                              F.logsigmoid(fallback_logit)], dim=1)
            inputs = selector_inputs(self.config, img0, img1, w0_img, w1_img, blend, fallback_logit, flows[1],
                                     flows[1] * torch.cat([t, 1 - t]))
            candidates = (w0_img, w1_img, blend)
            if self.config.selector_unwarped:  # the rule never picks the inputs as they are: only the selector may
                candidates += (img0, img1)
            sharp = {} if bicubic is None else sharpen_evidence(inputs, (w0_img, w1_img), bicubic)
        return {"candidates": candidates, "rule": rule, "residual": head[:, 1:4], "inputs": inputs,
                "head": head, "flows": flows, "pyramid": pyr} | sharp

    @staticmethod
    def compose(ev: dict, offset: torch.Tensor, gains: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The output frame ``(N, 3, H, W)`` and the choice's logits ``(N, K, H, W)`` from ``selector_evidence``'s
        ``ev`` and the selector's ``offset`` ``(N, K, H / 2, W / 2)`` (K candidates: 3, or 5 with the inputs): the
        candidates weighted by the softmax of the rule's logits plus the offset, plus the fusion's residual.
        ``gains``: the sharpener's (``sharpen.sharpened``: the two warped frames resampled with ``ev["bicubic"]``)."""
        rule = ev["rule"]
        # The selector may take weight from the blend, but give it little more than the rule does: a blend of two
        # frames is a double image wherever something moved, which a wrong choice of it shows at once (ghosted
        # objects), and the rule already falls back to it where the warped frames fail. Softmax weights move with
        # the offsets' differences (lowering both warped frames raises the blend as surely as raising it), so its
        # offset is capped at the lower of theirs plus BLEND_RAISE: its odds against them rise e**BLEND_RAISE at most.
        capped = torch.minimum(offset[:, 2:3], offset[:, :2].amin(1, keepdim=True) + Film.BLEND_RAISE)
        offset = upsample2(torch.cat([offset[:, :2], capped, offset[:, 3:]], dim=1), rule.shape[-2:])
        choice = rule + offset[:, :3]
        if offset.shape[1] > 3:  # the inputs as they are: ABSENT below the rest's total until the selector says
            choice = torch.cat([choice, choice.logsumexp(1, keepdim=True) + Film.ABSENT + offset[:, 3:]], dim=1)
        weights = torch.softmax(choice, dim=1)
        candidates = (ev["candidates"] if gains is None
                      else sharpened(ev["candidates"], ev["bicubic"], gains, ev.get("blurred")))
        base = sum(weights[:, k:k + 1].expand_as(c) * c for k, c in enumerate(candidates))  # (expanded: faster)
        return (base + ev["residual"]).clamp(0, 1), choice

    def sharpen_gains(self, ev: dict) -> torch.Tensor | None:
        """The sharpener's gains from ``selector_evidence``'s ``ev`` (or a cache of it), None without a sharpener."""
        if self.sharpener is None or "sharpen" not in ev:
            return None
        return self.sharpener(conv_input(ev["sharpen"], self.sharpener.head.weight))

    def _base(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor, read_shift: torch.Tensor | None = None):
        """Everything before the choice between the candidates: the fusion's head ``(N, 4 or 5, H, W)``, the flow
        pyramid, the image pyramid, the two warped frames, the fallback's logit (with the fusion's offset when it
        has cues), and with a sharpener the two warped frames sampled bicubic (else None). ``read_shift``
        ``(N, 4, H, W)``: a caller's correction of where frame 0 and frame 1 are read (pixels), added to the
        refiner's (convlstm's window motion gives one)."""
        cfg = self.config
        n = img0.shape[0]
        # Mixed precision: the convolutions run in the weights' dtype (bf16/fp16 when the model was converted),
        # everything geometric (pyramids, Lucas-Kanade, flows, warping, blending) in float32: half-precision
        # flow and warp coordinates would misplace pixels, and the Lucas-Kanade normal equations lose their
        # small determinants.
        pyr, feats, grey_pyr, flows = self.flow_pyramids(img0, img1)
        scale = torch.cat([t, 1 - t])  # (2N, 1, 1, 1): t for frame 0's rows, 1 - t for frame 1's
        levels = []  # per fusion level: (warped frame 0, warped frame 1, the two scaled flows)
        for j in range(cfg.fusion_levels):
            half = flows[j] * scale  # (t flow_10, (1 - t) flow_01): the t->0 and t->1 approximations
            both = pyr[j] if feats[j] is None else torch.cat([pyr[j], feats[j]], dim=1)  # (2N, 3 + C_j, h, w)
            warped = warp(both, half)
            levels.append((warped[:n], warped[n:], half))
        w0_img, w1_img = levels[0][0][:, :3], levels[0][1][:, :3]  # (N, 3, H, W) each
        bicubic = None
        if cfg.time_levels:  # the images along the symmetric motion at t where the flows are consistent
            grey0, grey1 = [g[:n] for g in grey_pyr], [g[n:] for g in grey_pyr]
            self.refined = {}  # the learned correction of where inputs are read (filled by it)
            refine = None if self.refiner is None else partial(corrections, self.refiner, grey0=grey0, grey1=grey1,
                flows=flows, t=t, time_finest=cfg.time_finest, size=img0.shape[-2:], keep=self.refined)
            if read_shift is not None:
                refine = partial(shifted, refine, read_shift)
            w0_img, w1_img, *bicubic = time_warps(img0, img1, w0_img, w1_img, grey0, grey1, flows, t, cfg, refine,
                                                  self.trust_fixed, bicubic=self.sharpener is not None)
            bicubic = tuple(bicubic) or None
        fallback_logit = self._fallback_logit(img0, img1, w0_img, w1_img)  # (N, 1, H, W) or None
        cues = self._cues(flows[0], levels[0][2], w0_img, w1_img, fallback_logit) if cfg.fusion_cues else None
        fusion_in = []
        for j, (w0, w1, half) in enumerate(levels):
            # Straight into the convolutions' dtype and layout: (images, features, flows) of frame 0 then 1, cues.
            images = (w0_img, w1_img) if j == 0 else (w0[:, :3], w1[:, :3])  # level 0: the images as blended
            parts = [*images, w0[:, 3:], w1[:, 3:], half[:n], half[n:]]
            if cues is not None:
                parts.append(cues if j == 0 else F.avg_pool2d(cues, 2**j))
            fusion_in.append(conv_input(torch.cat(parts, dim=1), self.fusion.head.weight))
        head = self.fusion(fusion_in)  # float32
        if fallback_logit is not None and cfg.fusion_cues:  # the network may move the fallback either way (its
            fallback_logit = fallback_logit + head[:, 4:5]  # offset starts at zero)
        return head, flows, pyr, w0_img, w1_img, fallback_logit, bicubic

    def flow_pyramids(self, img0: torch.Tensor, img1: torch.Tensor, plain: bool = False
                      ) -> tuple[list, list, list, list[torch.Tensor]]:
        """The image pyramid of both inputs ``(2N, 3, h_j, w_j)`` (frame 0's rows, then frame 1's), their features,
        their grey pyramid and the flow pyramid ``(2N, 2, h_j, w_j)``: flow_10 (on frame 1's grid, into frame 0)
        then flow_01 (``plain``: without the learned Lucas-Kanade weights)."""
        n = img0.shape[0]
        # Both frames through the shared extractor in one batch.
        pyr = image_pyramid(torch.cat([img0, img1], dim=0), self.config.pyramid_levels)  # level j: (2N, 3, h_j, w_j)
        feats = self.extractor(pyr)
        # Both directions in one batch: A = (frame1, frame0), B = (frame0, frame1) (the swap of feats).
        swapped = [None if f is None else torch.cat([f[n:], f[:n]]) for f in feats]
        grey_pyr = [grey(p) for p in pyr]  # Lucas-Kanade runs on grey images: one channel to warp, not three
        grey_swapped = [torch.cat([g[n:], g[:n]]) for g in grey_pyr]
        flows = self.flow(swapped, feats, grey_swapped, grey_pyr, plain)  # flows[j]: (2N, 2, h_j, w_j)
        return pyr, feats, grey_pyr, flows

    def with_refiner(self, filters: int = 16) -> Film:
        """This model with a fresh motion refiner (zero head: the same output until it is trained; ``framefill
        train --finetune W --refiner N``). A model that has one keeps it."""
        return self if self.refiner is not None else self._with_stage("refiner.", None, refiner_filters=filters)

    def with_lk_weights(self, filters: int = 16) -> Film:
        """This model with fresh learned weights inside its Lucas-Kanade updates (``film_parts.LKWeights``: zero
        head, weights of one, the same output until trained; ``framefill train --finetune W --lk-weights N``)."""
        return self if self.flow.weights is not None else self._with_stage("flow.weights.", None,
                                                                           lk_weight_filters=filters)

    def with_sharpener(self, filters: int = 16) -> Film:
        """This model with a fresh sharpener (``sharpen.Sharpener``: zero head, the same output until it is trained;
        ``framefill train --finetune W --sharpen N --selector-cache K``). It needs a selector; one it has it keeps."""
        return self if self.sharpener is not None else self._with_stage("sharpener.", None, sharpen_filters=filters)

    def _with_stage(self, prefix: str, state: dict | None, **config: int | bool) -> Film:
        """This model with the config changed so and its weights (``state``, or its own) kept; only ``prefix``'s
        are new."""
        new = Film(dataclasses.replace(self.config, **config)).to(self.fusion.head.weight.device)
        missing, unexpected = new.load_state_dict(self.state_dict() if state is None else state, strict=False)
        assert not unexpected and all(k.startswith(prefix) for k in missing)
        return new.train(self.training)

    def with_selector(self, filters: int = 16, unwarped: bool = False) -> Film:
        """This model with a fresh selector (zero head: the same output until it is trained; ``framefill train
        --finetune W --selector``). A model that has one keeps it; ``unwarped`` widens it to choose the inputs as
        they are too (``Selector.widened``: the new choices start at zero offset, so the output is unchanged
        but for their rule weight, ``ABSENT``)."""
        if self.selector is not None and (self.selector.unwarped or not unwarped):
            return self
        state = self.state_dict()
        if self.selector is not None:
            state = {k: v for k, v in state.items() if not k.startswith("selector.")}
            state.update({f"selector.{k}": v for k, v in self.selector.widened().state_dict().items()})
        return self._with_stage("selector.", state, selector_filters=self.config.selector_filters or filters,
                                selector_unwarped=unwarped)

    def with_cues(self) -> Film:
        """This model with ``fusion_cues`` switched on and nothing else changed: the fusion's input convolutions
        get zero weights for the cue channels and the head a zero fallback offset, so the new model's output
        equals this one's until it is trained (``framefill train --finetune W --fusion-cues``)."""
        if self.config.fusion_cues:
            return self
        new = Film(dataclasses.replace(self.config, fusion_cues=True)).to(self.fusion.head.weight.device)
        state = self.state_dict()
        grown = new.state_dict()
        head = grown["fusion.head.weight"].zero_(), grown["fusion.head.bias"].zero_()
        head[0][:4], head[1][:4] = state["fusion.head.weight"], state["fusion.head.bias"]  # offset 0: the fifth
        for j in range(self.config.fusion_levels):
            # A block's first conv reads (the level's inputs, then the coarser decoder output): the cues go in
            # between, with zero weights.
            key = f"fusion.blocks.{j}.0.0.weight"
            inputs = self.fusion.level_inputs[j]
            w = grown[key].zero_()
            w[:, :inputs] = state[key][:, :inputs]
            w[:, inputs + Fusion.CUES:] = state[key][:, inputs:]
        new.load_state_dict({k: v if v.shape == grown[k].shape else grown[k] for k, v in state.items()})
        return new.train(self.training)

    def _cues(self, flow: torch.Tensor, half: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor,
              fallback_logit: torch.Tensor | None) -> torch.Tensor:
        """Parameter-free occlusion cues for the fusion, ``(N, 4, H, W)`` float32: where the warped frames
        disagree (grey), the fallback weight, and how consistent each input's flow is with the other's
        (forward-backward check), sampled at time t as the input is: near 0 where that input's pixel is hidden
        in the other frame or leaves the picture, which is where the blend should take the other input.

        ``flow`` ``(2N, 2, H, W)``: flow_10 then flow_01 (as ``PyramidFlowEstimator`` returns them); ``half``: the
        same scaled to time t (what warps each input)."""
        n = w0.shape[0]
        flow_10, flow_01 = flow[:n], flow[n:]
        both = torch.cat([flow_01, flow_10])  # frame 0's flow first, as frame 0's rows of ``half``
        consistency = fb_consistency(both, torch.cat([flow_10, flow_01]), self.config.vis_sigma)  # (2N, 1, H, W)
        at_t = warp(consistency, half)  # each input's consistency where its warped pixel comes from
        fallback = torch.zeros_like(at_t[:n]) if fallback_logit is None else torch.sigmoid(fallback_logit)
        return torch.cat([grey(w0 - w1).abs(), fallback, at_t[:n], at_t[n:]], dim=1)

    def _fallback_logit(self, img0: torch.Tensor, img1: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor
                        ) -> torch.Tensor | None:
        """Where the two warped frames disagree more than the two inputs do (over ``fallback_window``), the
        flow made things worse (a failed match, a static area blurred by sub-pixel warping): the logit of the
        weight toward the plain average of the inputs, ``(N, 1, H, W)``, or None when switched off."""
        cfg = self.config
        if not cfg.fallback_window:
            return None
        warped = box_filter(grey(w0 - w1).abs(), cfg.fallback_window)
        unwarped = box_filter(grey(img0 - img1).abs(), cfg.fallback_window)
        return (warped - unwarped) / cfg.fallback_temp


def _times(t: torch.Tensor | float | None, n: int, device: torch.device) -> torch.Tensor:
    """``t`` (None: 0.5; a number; or one per sample) as an ``(n, 1, 1, 1)`` float32 tensor, checked to be in [0, 1]."""
    t = torch.as_tensor(0.5 if t is None else t, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"Film got {t.numel()} times for {n} frame pairs")
    if t.device.type == "cpu" and not bool(((t >= 0) & (t <= 1)).all()):  # (no check that would sync a GPU)
        raise ValueError(f"Film times must be in [0, 1], got {t.tolist()}")
    return t.reshape(n, 1, 1, 1)


PRESETS: dict[str, FilmConfig] = {
    # The shipped default: under a second per 720p frame on 2 CPU cores; flow is refined down to 1/2 resolution.
    "film-s": FilmConfig(search_radius=2),
    # A larger setting for GPUs and for quality-first runs.
    "film-m": FilmConfig(filters=24, flow_filters=48, fusion_filters=24, fusion_max_filters=96, skip_levels=0,
                         pyramid_levels=7),
    # Tests only: a few thousand parameters.
    "film-tiny": FilmConfig(pyramid_levels=3, sub_levels=2, filters=4, specialized_levels=1, flow_filters=8,
                            flow_convs=2, skip_levels=0, fusion_levels=2, fusion_filters=4,
                            fusion_max_filters=8, lk_iters=2, lk_window=5, lk_smooth=3, time_iters=2),
}


def build_film(preset: str = "film-s", **overrides) -> Film:
    if preset not in PRESETS:
        raise ValueError(f"unknown film preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    if overrides:
        cfg = FilmConfig(**{**cfg.to_dict(), **overrides})
    return Film(cfg)
