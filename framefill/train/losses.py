"""Losses that need no downloaded network: robust L1, census, multi-scale (Laplacian) L1.

All take images ``(N, 3, H, W)`` in [0, 1] and return a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Robust L1: ``sqrt((pred - target)^2 + eps^2)``, averaged."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def _grey(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]) * 255


def census(pred: torch.Tensor, target: torch.Tensor, patch: int = 7) -> torch.Tensor:
    """Census loss (as in UnFlow / FILM): a soft Hamming distance between soft ternary census transforms.

    Robust to brightness changes; it rewards matching local structure, which sharpens results. The
    ``patch * patch`` neighbours are visited one shift at a time (no unfold), which keeps memory and
    time low on a CPU.
    """
    gp, gt = _grey(pred), _grey(target)
    pad = patch // 2
    pp = F.pad(gp, (pad, pad, pad, pad), mode="replicate")
    pt = F.pad(gt, (pad, pad, pad, pad), mode="replicate")
    h, w = gp.shape[-2:]
    dist = torch.zeros_like(gp)
    for dy in range(patch):
        for dx in range(patch):
            if dy == pad and dx == pad:
                continue
            a = pp[..., dy : dy + h, dx : dx + w] - gp
            b = pt[..., dy : dy + h, dx : dx + w] - gt
            d = (a / torch.sqrt(0.81 + a * a) - b / torch.sqrt(0.81 + b * b)) ** 2
            dist = dist + d / (0.1 + d)
    return torch.sqrt(dist * dist + 1e-6).mean() / (patch * patch)


def _gauss_down(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype) / 16
    k2 = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 5, 5)
    x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k2, groups=x.shape[1])
    return x[..., ::2, ::2]


def laplacian_l1(pred: torch.Tensor, target: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """L1 between Laplacian pyramids, each level weighted by ``2**level`` (coarse errors count more)."""
    loss = pred.new_zeros(())
    for lvl in range(levels):
        if min(pred.shape[-2:]) < 8:
            break
        dp, dt = _gauss_down(pred), _gauss_down(target)
        up_p = F.interpolate(dp, size=pred.shape[-2:], mode="bilinear", align_corners=False)
        up_t = F.interpolate(dt, size=target.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss + (2**lvl) * ((pred - up_p) - (target - up_t)).abs().mean()
        pred, target = dp, dt
    return loss


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1], ``(N,)``."""
    mse = ((pred - target) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def choice_loss(logits: torch.Tensor, candidates: list[torch.Tensor], target: torch.Tensor, window: int = 5,
                max_margin: float = 0.1) -> torch.Tensor:
    """A per-pixel target for a learned choice between candidate frames: cross-entropy of ``logits``
    ``(N, K, H, W)`` against the candidate closest to ``target`` (mean absolute error over a ``window`` x
    ``window`` neighbourhood, so that a choice follows regions, not noise), each pixel weighted by how much the
    choice matters there (the best candidate's margin over the second best, capped at ``max_margin``). Where
    the candidates agree the weight is zero: nothing to learn there, and such pixels do not drown the rest.
    """
    err = torch.stack([(c.float() - target).abs().mean(1) for c in candidates], dim=1)  # (N, K, H, W)
    err = F.avg_pool2d(err, window, stride=1, padding=window // 2, count_include_pad=False)
    ranked = err.topk(2, dim=1, largest=False)
    margin = (ranked.values[:, 1] - ranked.values[:, 0]).clamp(max=max_margin)  # (N, H, W)
    ce = F.cross_entropy(logits.float(), ranked.indices[:, 0], reduction="none")  # (N, H, W)
    return (margin * ce).sum() / (margin.sum() + 1e-6)
