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
import torch.nn.functional as F

_GRID_CACHE: dict[tuple, torch.Tensor] = {}


def _base_grid(n: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel-centre coordinates of an ``h x w`` image in grid_sample's [-1, 1] units, ``(1, H, W, 2)``."""
    key = (h, w, device, dtype)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
        ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1).unsqueeze(0).to(dtype)  # (1, H, W, 2)
        if len(_GRID_CACHE) > 64:
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = grid
    return grid


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``img`` by ``flow``: ``out[y, x] = img[y + flow_y, x + flow_x]``.

    Shape:
        img: ``(N, C, H, W)``; flow: ``(N, 2, H, W)`` in pixels; returns ``(N, C, H, W)``.
    """
    if img.shape[0] != flow.shape[0] or img.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"warp needs img (N, C, H, W) and flow (N, 2, H, W); got {tuple(img.shape)} and "
                         f"{tuple(flow.shape)}")
    n, _, h, w = img.shape
    scale = torch.tensor([2.0 / w, 2.0 / h], device=flow.device, dtype=flow.dtype).view(1, 1, 1, 2)
    grid = _base_grid(n, h, w, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1) * scale  # (N, H, W, 2)
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=False)


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
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x[..., : hw[0], : hw[1]]


def local_correlation(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """Cosine-similarity cost volume over a ``(2r+1)^2`` window.

    ``out[k, y, x] = <a[:, y, x], b[:, y + dy_k, x + dx_k]>`` with both feature vectors normalised to unit length;
    displacements in row-major order (dy outer, dx inner), zero outside the image.

    Shape:
        a, b: ``(N, C, H, W)``; returns ``(N, (2 * radius + 1) ** 2, H, W)`` in [-1, 1].
    """
    n, c, h, w = a.shape
    a = F.normalize(a, dim=1, eps=1e-4)
    bp = F.pad(F.normalize(b, dim=1, eps=1e-4), (radius, radius, radius, radius))
    out = []
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out.append((a * bp[..., dy : dy + h, dx : dx + w]).sum(dim=1, keepdim=True))
    return torch.cat(out, dim=1)


def displacements(radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The ``(2r+1)^2`` displacements of ``local_correlation``'s channels as ``(1, K, 2, 1, 1)`` (dx, dy)."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=1).view(1, -1, 2, 1, 1)
