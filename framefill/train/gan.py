"""Adversarial fine-tuning (``framefill train --gan``): two discriminators and the non-saturating GAN loss.

- ``FrameDiscriminator``: a per-frame image critic (PatchGAN: strided 4x4 convolutions to a map of logits, each
  judging a patch of about 70 px), real middle frames against the model's.
- ``TupleDiscriminator``: a critic over the whole frame tuple, ``(first input, middle, second input)`` stacked in
  time, built of 3D convolutions (as the 3D-convolution in-betweening and MoCoGAN video discriminators): it
  judges whether the middle frame moves consistently between its neighbours, which a per-frame critic cannot
  see. For four-frame models the tuple is the pair around the gap and the middle.
Both use spectral normalisation (stable without batch statistics, and the same with any batch split) and
LeakyReLU. Losses are the non-saturating ones of Goodfellow et al.: the critic minimises
``softplus(-D(real)) + softplus(D(fake))``, the model adds ``weight * softplus(-D(fake))`` (each a mean over
the logits), to its reconstruction losses, which stay on: the GAN term only trades a little PSNR for detail.

``GanConfig.weight`` is small (0.01) because the reconstruction terms are means of errors in [0, 1] while the
adversarial term is about 0.7 at the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class GanConfig:
    enabled: bool = False  # add the adversarial stage (--gan)
    weight: float = 0.01  # weight of the model's adversarial term, next to its reconstruction losses
    lr: float = 2e-4  # the discriminators' learning rate (AdamW, betas 0.5 / 0.999, constant)
    filters: int = 32  # channels of the first discriminator layer (doubling per layer)
    tuple_weight: float = 1.0  # the tuple critic's share of the adversarial term (the frame critic's is 1)


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module)


class FrameDiscriminator(nn.Module):
    """``(N, 3, H, W)`` in [0, 1] -> patch logits ``(N, 1, H / 8 - 2, W / 8 - 2)``."""

    def __init__(self, filters: int = 32) -> None:
        super().__init__()
        f = filters
        self.net = nn.Sequential(
            _sn(nn.Conv2d(3, f, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv2d(f, 2 * f, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv2d(2 * f, 4 * f, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv2d(4 * f, 1, 3, 1, 0)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class TupleDiscriminator(nn.Module):
    """``(N, T, 3, H, W)`` frames in time order -> logits ``(N, 1, T', H', W')`` (3D convolutions over time)."""

    def __init__(self, filters: int = 32) -> None:
        super().__init__()
        f = filters
        self.net = nn.Sequential(
            _sn(nn.Conv3d(3, f, (3, 4, 4), (1, 2, 2), (1, 1, 1))), nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv3d(f, 2 * f, (3, 4, 4), (1, 2, 2), (0, 1, 1))), nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv3d(2 * f, 4 * f, (1, 4, 4), (1, 2, 2), (0, 1, 1))), nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Conv3d(4 * f, 1, (1, 3, 3), 1, 0)),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.transpose(1, 2) * 2 - 1)  # (N, 3, T, H, W)


class Critics(nn.Module):
    """Both discriminators, as one module (one optimiser, one DDP wrapper, one state dict)."""

    def __init__(self, cfg: GanConfig) -> None:
        super().__init__()
        self.frame = FrameDiscriminator(cfg.filters)
        self.tuple = TupleDiscriminator(cfg.filters)
        self.tuple_weight = cfg.tuple_weight

    def forward(self, before: torch.Tensor, middle: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """Logits of both critics for the tuples ``(before, middle, after)``, each ``(N, 3, H, W)``."""
        return [self.frame(middle), self.tuple(torch.stack([before, middle, after], dim=1))]

    def weights(self) -> list[float]:
        return [1.0, self.tuple_weight]


def critic_loss(real: list[torch.Tensor], fake: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Non-saturating discriminator loss: real logits up, fake ones down."""
    return sum(w * (F.softplus(-r).mean() + F.softplus(f).mean()) for r, f, w in zip(real, fake, weights,
                                                                                     strict=True))


def generator_loss(fake: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Non-saturating generator loss: ``softplus(-D(fake))``, i.e. ``-log sigmoid(D(fake))``."""
    return sum(w * F.softplus(-f).mean() for f, w in zip(fake, weights, strict=True))
