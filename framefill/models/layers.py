"""Geometry helpers shared by the models: backward warping, pyramids, flow resizing, padding.

Conventions (fixed here, pinned by tests):
- images are ``(N, C, H, W)`` float tensors;
- a flow is ``(N, 2, H, W)`` in pixels of its own level, channel 0 = dx, channel 1 = dy;
- ``warp(img, flow)`` is *backward* warping: ``out[y, x] = img[y + dy, x + dx]`` (bilinear,
  samples outside the image are clamped to the border);
- pyramids are lists, finest level first; each coarser level halves height and width.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_GRID_CACHE: dict[tuple, torch.Tensor] = {}


def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel-centre coordinates of an ``h x w`` image in grid_sample's [-1, 1] units, ``(1, 2, H, W)`` (x, y)."""
    key = (h, w, device, dtype)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
        ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy]).unsqueeze(0).to(dtype)  # (1, 2, H, W)
        if len(_GRID_CACHE) > 64:
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = grid
    return grid


def warp(img: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward-warp ``img`` by ``flow``: ``out[y, x] = img[y + flow_y, x + flow_x]``, sampled ``mode``
    (``grid_sample``'s: bilinear, or bicubic, sharper between pixels but with overshoot at edges).

    Shape:
        img: ``(N, C, H, W)``; flow: ``(N, 2, H, W)`` in pixels; returns ``(N, C, H, W)``.
    """
    if img.shape[0] != flow.shape[0] or img.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"warp needs img (N, C, H, W) and flow (N, 2, H, W); got {tuple(img.shape)} and "
                         f"{tuple(flow.shape)}")
    h, w = img.shape[-2:]
    scale = torch.tensor([2.0 / w, 2.0 / h], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    # Worked out in the flow's own layout and handed over as a permuted view (N, H, W, 2): grid_sample reads it as
    # it is, and the same sums in (N, H, W, 2) order (a permuted flow times a broadcast scale, plus a broadcast
    # base) take CPU paths about 1.5x slower for the same values.
    grid = (flow * scale).add_(_base_grid(h, w, flow.device, flow.dtype)).permute(0, 2, 3, 1)
    # Sample in the wider of the two precisions: a half-precision grid would misplace samples by pixels
    # (bf16 resolves 1/128 of [-1, 1]), so half-precision features warped by a float32 flow are sampled in
    # float32 and come back in their own dtype.
    dtype = torch.promote_types(img.dtype, flow.dtype)
    out = F.grid_sample(img.to(dtype), grid.to(dtype), mode=mode, padding_mode="border", align_corners=False)
    return out.to(img.dtype)


class ConvAct(nn.Sequential):
    """A 3x3 (or ``k x k``) convolution then a leaky ReLU of ``slope``: an ``nn.Sequential`` of the two, so its
    parameters keep the names weights files give them (``0.weight``, ``0.bias``).

    Without autograd on the CPU it is one oneDNN call that applies the activation to the convolution's output as
    it is written (``mkldnn._convolution_pointwise``, what inductor fuses the pair into), instead of a second pass
    over it: a bf16 leaky ReLU on its own costs about as much memory traffic as the smaller convolutions here
    (``tools/profile_model.py``). The outputs agree with the two calls' to bf16's rounding (one ulp where the
    activation is applied before rounding instead of after)."""

    def __init__(self, cin: int, cout: int, k: int = 3, dilation: int = 1, slope: float = 0.2) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation),
                         nn.LeakyReLU(slope, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        global _FUSED_CONV_ACT
        conv = self[0]
        if _fusable(x, conv.weight):
            try:
                return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, conv.padding, conv.stride,
                                                               conv.dilation, conv.groups, "leaky_relu",
                                                               [self[1].negative_slope], "")
            except RuntimeError:  # a CPU or build whose oneDNN lacks it: the two calls from now on
                _FUSED_CONV_ACT = False
        return self[1](conv(x))


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``ConvAct`` may take the fused oneDNN path: CPU float32 or bf16, inputs in the weights' dtype, and no
    gradient wanted through it (the fused op has no backward)."""
    return (x.device.type == "cpu" and x.dtype == weight.dtype and x.dtype in (torch.float32, torch.bfloat16)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and _FUSED_CONV_ACT)


_FUSED_CONV_ACT = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def conv_input(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype and memory format of a convolution's ``weight``.

    The models keep their geometry (pyramids, flows, warps, blends) in float32 and run their convolutions in
    the weights' precision (bf16/fp16 once the model is converted), and in channels_last when the model was
    converted to it (as on the CPU): a layout mismatch costs a full copy inside every convolution, and warps
    and concatenations return the default layout.
    """
    channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    return x.to(dtype=weight.dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def conv_output(x: torch.Tensor) -> torch.Tensor:
    """A convolution's output as the geometry around it wants it: float32 in the default layout. Out of a model
    converted to channels_last it comes channels_last, and every elementwise op that then mixes it with a tensor
    of the default layout (or upsamples it) takes a slower path than the one copy made here."""
    return x.to(torch.float32, memory_format=torch.contiguous_format)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve height and width by 2x2 averaging (odd sizes round down)."""
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def image_pyramid(img: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``levels`` images, finest (the input) first, each coarser one half the size of the previous."""
    pyr = [img]
    for _ in range(levels - 1):
        pyr.append(downsample(pyr[-1]))
    return pyr


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a flow to ``size = (H, W)``, scaling its values so they stay in pixels of the new level."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    sx, sy = size[1] / w, size[0] / h
    return out * torch.tensor([sx, sy], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)


def upsample2(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of a feature map to ``size`` (no value scaling: use ``resize_flow`` for flows)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad bottom/right by edge replication so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` so ``crop(out, hw)`` undoes it.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # By copies into a new tensor, the last column then the last row: F.pad's replicate mode, the same values,
        # took about 30 ms for a 720p frame of interleaved pixels on the CPU, these copies about 3.
        out = x.new_empty(*x.shape[:-2], h + ph, w + pw)
        out[..., :h, :w] = x
        if pw:
            out[..., :h, w:] = x[..., w - 1:w]
        if ph:
            out[..., h:, :] = out[..., h - 1:h, :]
        x = out
    return x, (h, w)


def crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x[..., : hw[0], : hw[1]]


def grey(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma, ``(N, 1, H, W)``."""
    return 0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]


def box_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size x size`` box around each pixel (edges replicated); ``size`` 1 returns ``x``."""
    if size <= 1:
        return x
    # Separable (a row mean, then a column mean) by adding shifted views: the same result as one size x size
    # mean, in 2*size additions per pixel; on the CPU this is 3-10x faster than avg_pool2d with stride 1.
    r = size // 2
    for dim, pad in ((-1, (r, r, 0, 0)), (-2, (0, 0, r, r))):
        padded = F.pad(x, pad, mode="replicate")
        n = x.shape[dim]
        acc = padded.narrow(dim, 0, n) + padded.narrow(dim, 1, n)  # a new tensor without a copy pass
        for i in range(2, size):
            acc += padded.narrow(dim, i, n)
        x = acc.div_(size)
    return x


def lucas_kanade_step(a: torch.Tensor, b_warped: torch.Tensor, window: int, damping: float | torch.Tensor,
                      *, with_confidence: bool = False, weight: torch.Tensor | None = None
                      ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One damped Lucas-Kanade update ``d`` so that ``a[y, x] ~ b_warped[y + d_y, x + d_x]``.

    Solves ``(sum g g^T + damping I) d = sum g (a - b)`` over a ``window x window`` box per pixel, with ``g``
    the mean spatial gradient of the two grey images: differentiable, symmetric in the two images, exactly
    zero for identical images, and near zero where there is no texture (the damping).

    With ``with_confidence`` it also returns the smaller eigenvalue of the (undamped) structure tensor,
    ``(N, 1, H, W)``: how well the window pins the motion down in its worst direction (0 on flat areas and
    along straight edges: the aperture problem).

    ``weight`` ``(N, 1, H, W)``, positive: each pixel's share in its neighbours' sums (a weighted mean over the
    window, so the damping keeps its scale; all ones is the plain step). The confidence stays the unweighted one.

    Shape:
        a, b_warped: ``(N, C, H, W)`` (converted to grey when C = 3); returns ``(N, 2, H, W)`` (dx, dy).
    """
    if a.shape[1] == 3:
        a, b_warped = grey(a), grey(b_warped)
    m = 0.5 * (a + b_warped)
    px = F.pad(m, (1, 1, 0, 0), mode="replicate")
    py = F.pad(m, (0, 0, 1, 1), mode="replicate")
    gx = 0.5 * (px[..., 2:] - px[..., :-2])  # central differences
    gy = 0.5 * (py[..., 2:, :] - py[..., :-2, :])
    gt = a - b_warped
    terms = torch.cat([gx * gx, gx * gy, gy * gy, gx * gt, gy * gt], dim=1)  # (N, 5, H, W)
    if weight is None:
        s = box_filter(terms, window)
    else:
        s = box_filter(terms * weight, window) / box_filter(weight, window).clamp_min(1e-6)
    sxx, sxy, syy, sxt, syt = (s[:, i : i + 1] for i in range(5))
    dxx, dyy = sxx + damping, syy + damping
    det = dxx * dyy - sxy * sxy
    dx = (dyy * sxt - sxy * syt) / det
    dy = (dxx * syt - sxy * sxt) / det
    step = torch.cat([dx, dy], dim=1)
    if not with_confidence:
        return step
    if weight is not None:  # the confidence of the window as it is, not as weighted
        plain = box_filter(terms[:, :3], window)
        sxx, sxy, syy = plain[:, :1], plain[:, 1:2], plain[:, 2:3]
    half_trace = 0.5 * (sxx + syy)
    smallest = half_trace - (0.25 * (sxx - syy) ** 2 + sxy * sxy).clamp_min(1e-20).sqrt()
    return step, smallest.clamp_min(0)


def search_flow(a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor, radius: int, window: int, ratio: float
                ) -> torch.Tensor:
    """``flow`` moved, where it pays, by the whole-pixel step within ``radius`` that best matches ``a`` to ``b``.

    A Lucas-Kanade step only finds a motion within about half its window of where it starts; a thing that moves
    further than the coarser level's flow says (a small object whose motion the coarse level blurred into its
    background's) stays where it is. This tries every step ``(dx, dy)`` in ``[-radius, radius]^2`` around the flow:
    ``b`` is warped by the flow once and shifted by each step, and each step is scored by the mean absolute grey
    difference from ``a`` over a ``window x window`` box. A pixel takes its best step only where that step's
    difference is below ``ratio`` times the flow's own, so the flow stays wherever the evidence is not clear (flat
    areas, repeated texture); the Lucas-Kanade steps that follow then refine it. Parameter-free; no gradient flows
    through the choice (it flows through ``flow``).

    Shape:
        a, b: ``(N, 1, H, W)`` grey images; flow ``(N, 2, H, W)`` (dx, dy: ``a[y, x] ~ b[y + dy, x + dx]``).
    """
    if radius <= 0:
        return flow
    h, w = a.shape[-2:]
    k = 2 * radius + 1
    with torch.no_grad():  # only the choice reads the warp: no graph for it under training
        padded = F.pad(warp(b, flow), (radius,) * 4, mode="replicate")
        diffs = torch.cat([(a - padded[..., dy:dy + h, dx:dx + w]).abs() for dy in range(k) for dx in range(k)], 1)
        cost = box_filter(diffs, window)  # (N, k * k, H, W): step (dx, dy) at channel (dy + r) * k + (dx + r)
        best, index = cost.min(dim=1, keepdim=True)
        centre = radius * k + radius
        take = best < ratio * cost[:, centre:centre + 1]
        step = torch.cat([index % k - radius, index // k - radius], dim=1).to(flow.dtype) * take
    return flow + step


def fb_consistency(flow_ab: torch.Tensor, flow_ba: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Forward-backward consistency of ``flow_ab`` (a's grid into b) with ``flow_ba``, on a's grid, ``(N, 1, H, W)``
    in (0, 1]: 1 where following the flow into b and back returns to the start, near 0 where it does not (the
    pixel is hidden in b, or the flow is wrong there). Sundaram, Brox and Keutzer (ECCV 2010): the mismatch is
    measured against ``sigma`` pixels plus 10% of the motion, so fast motion is allowed a proportional error.
    """
    back = warp(flow_ba, flow_ab)  # b's flow where a's pixel lands
    mismatch = (flow_ab + back).square().sum(1, keepdim=True)
    motion = flow_ab.square().sum(1, keepdim=True) + back.square().sum(1, keepdim=True)
    return torch.exp(-mismatch / (sigma * sigma + 0.01 * motion))
