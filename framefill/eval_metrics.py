"""The drop-frame scores of ``framefill eval``: a method's frame against the truth.

Metrics, on ``(H, W, 3)`` uint8 RGB taken as values in [0, 255], one figure per triplet (means are over
triplets):
- PSNR: ``10 log10(255^2 / MSE)``, MSE over every pixel and channel; 100 dB for identical images (a mean
  over triplets stays finite).
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, computed
  per channel over the valid window positions (no padding, as the reference MATLAB code) and averaged.
- IE, interpolation error (Baker et al., "A Database and Evaluation Methodology for Optical Flow", 2011):
  the root mean square over pixels of the RGB difference, the L2 norm over the three channels at each pixel;
  that is ``sqrt(3)`` times the RMS over all values (for grey content, ``sqrt(3)`` times the one-channel IE).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_MAX = 100.0  # dB, for equal images (as framefill.train.losses.psnr: MSE floored at 1e-10 of the peak)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5

Frame = np.ndarray  # (H, W, 3) uint8 RGB

def _pair(pred: Frame, truth: Frame) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != truth.shape or pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) images of one shape, got {pred.shape} and {truth.shape}")
    return pred.astype(np.float64), truth.astype(np.float64)


def psnr(pred: Frame, truth: Frame) -> float:
    """PSNR in dB of two uint8 RGB images (peak 255), at most ``PSNR_MAX`` (equal images)."""
    a, b = _pair(pred, truth)
    mse = max(float(np.mean((a - b) ** 2)), 255.0**2 * 10 ** (-PSNR_MAX / 10))
    return 10 * float(np.log10(255.0**2 / mse))


def ie(pred: Frame, truth: Frame) -> float:
    """Middlebury interpolation error: RMS over pixels of the L2 norm of the RGB difference (0..255 scale)."""
    a, b = _pair(pred, truth)
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=2))))


def _gaussian(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()  # (size,)


def ssim(pred: Frame, truth: Frame) -> float:
    """Mean SSIM of two uint8 RGB images: per channel, 11x11 Gaussian window (sigma 1.5), valid positions only."""
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {pred.shape}")
    a, b = _pair(pred, truth)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian()
    row, col = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)
    scores = []
    for ch in range(3):  # one channel at a time: five float64 maps of a 4K frame are already 330 MB
        x, y = torch.from_numpy(a[..., ch]), torch.from_numpy(b[..., ch])
        maps = torch.stack([x, y, x * x, y * y, x * y]).unsqueeze(1)  # (5, 1, H, W)
        mu_x, mu_y, xx, yy, xy = F.conv2d(F.conv2d(maps, row), col)[:, 0]  # each (H - 10, W - 10)
        var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
        s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        scores.append(float(s.mean()))
    return float(np.mean(scores))
