"""The ConvLSTM interpolator (Suzuki and Ikehara, "Residual Learning of Video Frame Interpolation Using
Convolutional LSTM", IEEE Access 2020): four frames in, the frame halfway between the middle two out.

Given I0, I1, I2, I3 (equally spaced), the network predicts I1.5 (t = 0.5 of the pair I1, I2; the scheduler
recurses for other times). Two stages, one module each:

1. ``Synthesis``: a U-Net. Its encoder runs over each of the four frames with shared weights (time is folded
   into the batch: ``(N, 4, 3, H, W)`` -> ``(4N, 3, H, W)``); at every encoder level a ``ConvLSTMCell`` then
   carries the level's features through time, I0 first, and the hidden state after I3 is that level's skip
   connection. The decoder upsamples from the coarsest skip, concatenating each finer one, and a 3x3 head
   predicts the residual between I1.5 and the average of I1 and I2: ``synth = (I1 + I2) / 2 + r``.
2. ``Refinement``: over ``(synth, I1, I2)`` (9 channels), a 3x3 stem, ``refine_blocks`` attention blocks and
   a 3x3 head adding a residual to ``synth``. Each block is conv-ReLU-conv, then channel attention
   (squeeze-and-excitation: global mean, 1x1 down by ``reduction``, ReLU, 1x1 up, sigmoid) and spatial
   attention (channel mean and max, a 7x7 conv, sigmoid), each multiplying the features, plus the block's
   input (a residual block).

Training loss (``framefill.train.loop``): ``0.5 L1(synth) + L1(refined)`` (robust L1), plus the census and
Laplacian terms that the film training uses.

Choices the paper leaves open, fixed here:
- widths ``filters`` per level, levels at 1/2 to 1/16 resolution, one ConvLSTM per level with as many hidden
  channels as the level's features, gates from one 3x3 conv over ``[x, h]`` (the four gates stacked: input,
  forget, output, candidate), the forget gate's bias starting at 1, a zero state ``(h, c)`` at I0;
- a single forward pass over time (I0 -> I3), not a bidirectional one: the last hidden state has seen all four;
- 2x average pooling between encoder levels, bilinear upsampling in the decoder, ReLU everywhere;
- both residual heads start near zero (weights scaled by ``head_init``), so an untrained model is the blend of
  I1 and I2 and training starts from there;
- reduction 4 in the channel attention and a 7x7 spatial-attention kernel (as in CBAM).

Missing outer frames (the ends of a video, a scene cut next to the pair) are given as copies of the nearer
middle frame (I0 := I1, I3 := I2); training shows the model such windows too (``DataConfig.edge_prob``).

Both networks run on 2x2 pixel blocks folded into channels (``space_to_depth``; pixel unshuffle in, pixel shuffle
out): no information is lost, and wide convolutions on a quarter of the pixels run faster on a CPU than narrow
ones on all of them. Size divisibility: H and W must be multiples of ``space_to_depth * 2 **
(len(filters) - 1)`` (``ConvLSTMConfig.divisor``, 16 for ``convlstm-s``); the scheduler pads and crops back.
No flow: motion is handled by the receptive field of the coarse levels, so large motion comes out as a blend
(see weights/README.md for what that costs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.layers import conv_input

FRAMES = 4  # frames in a window: I0, I1, I2, I3


@dataclass(frozen=True)
class ConvLSTMConfig:
    filters: tuple[int, ...] = (16, 32, 64, 64)  # encoder/ConvLSTM channels per level, finest first
    decoder_convs: int = 2  # 3x3 convs per decoder level
    refine_filters: int = 16  # channels of the refinement network
    refine_blocks: int = 2  # attention blocks in the refinement network
    reduction: int = 4  # channel-attention (squeeze-and-excitation) reduction ratio
    spatial_kernel: int = 7  # spatial-attention conv size
    head_init: float = 0.01  # scale of the residual heads' initial weights (near 0: start at the blend)
    space_to_depth: int = 2  # both networks run on s x s pixel blocks folded into channels (1: full resolution)

    def __post_init__(self) -> None:
        if len(self.filters) < 1 or any(int(f) < 1 for f in self.filters):
            raise ValueError(f"filters must be positive channel counts, got {self.filters}")
        if self.reduction < 1 or self.refine_filters < self.reduction:
            raise ValueError(f"need 1 <= reduction <= refine_filters, got {self.reduction} and {self.refine_filters}")
        if self.space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {self.space_to_depth}")
        if self.spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be odd, got {self.spatial_kernel}")

    @property
    def divisor(self) -> int:
        return self.space_to_depth * 2 ** (len(self.filters) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _head(cin: int, scale: float, cout: int = 3) -> nn.Conv2d:
    conv = _conv(cin, cout)
    with torch.no_grad():
        conv.weight.mul_(scale)
        conv.bias.zero_()
    return conv


class ConvLSTMCell(nn.Module):
    """One time step of a convolutional LSTM: ``(x, (h, c)) -> (h', c')``; the caller loops over time.

    Shape:
        x: ``(N, in_channels, H, W)``; h, c: ``(N, hidden, H, W)`` (``zero_state`` makes the start).
    """

    def __init__(self, *, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = _conv(in_channels + hidden, 4 * hidden, kernel)
        with torch.no_grad():  # forget gate open at the start: the state carries through time
            self.gates.bias[hidden:2 * hidden].fill_(1.0)

    def zero_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
        return z, z

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        if h.shape[0] != x.shape[0] or h.shape[2:] != x.shape[2:] or h.shape[1] != self.hidden:
            raise ValueError(f"ConvLSTMCell state {tuple(h.shape)} does not fit input {tuple(x.shape)} "
                             f"with {self.hidden} hidden channels")
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # each (N, hidden, H, W)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class Synthesis(nn.Module):
    """The U-Net with ConvLSTM skips: ``(N, 4, 3, H, W)`` -> the residual over the blend of I1 and I2, and
    ``synth = (I1 + I2) / 2 + residual``."""

    def __init__(self, cfg: ConvLSTMConfig) -> None:
        super().__init__()
        f = [int(c) for c in cfg.filters]
        self.s = cfg.space_to_depth
        self.encoder = nn.ModuleList(
            nn.Sequential(_conv(3 * self.s**2 if j == 0 else f[j - 1], f[j]), nn.ReLU(inplace=True), _conv(f[j], f[j]),
                          nn.ReLU(inplace=True)) for j in range(len(f)))
        self.cells = nn.ModuleList(ConvLSTMCell(in_channels=c, hidden=c) for c in f)
        self.decoder = nn.ModuleList()
        for j in range(len(f) - 1):  # level j takes the upsampled level j + 1 and skip j
            convs: list[nn.Module] = [_conv(f[j + 1] + f[j], f[j]), nn.ReLU(inplace=True)]
            for _ in range(cfg.decoder_convs - 1):
                convs += [_conv(f[j], f[j]), nn.ReLU(inplace=True)]
            self.decoder.append(nn.Sequential(*convs))
        self.head = _head(f[0], cfg.head_init, 3 * self.s**2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        n, t = frames.shape[:2]
        x = frames.flatten(0, 1)  # (4N, 3, H, W): time folded into the batch, frame-major per window
        x = conv_input(F.pixel_unshuffle(x, self.s), self.head.weight)  # (4N, 3 s^2, H / s, W / s)
        skips = []
        for j, (enc, cell) in enumerate(zip(self.encoder, self.cells, strict=True)):
            if j:
                x = F.avg_pool2d(x, 2)
            x = enc(x)  # (4N, C_j, H_j, W_j)
            seq = x.view(n, t, *x.shape[1:])  # (N, 4, C_j, H_j, W_j)
            state = cell.zero_state(seq[:, 0])
            for k in range(t):
                state = cell(seq[:, k], state)
            skips.append(state[0])  # (N, C_j, H_j, W_j): the hidden state after I3
        y = skips[-1]
        for j in reversed(range(len(self.decoder))):
            y = F.interpolate(y, size=skips[j].shape[-2:], mode="bilinear", align_corners=False)
            y = self.decoder[j](torch.cat([y, skips[j]], dim=1))
        residual = F.pixel_shuffle(self.head(y), self.s).to(frames.dtype)  # (N, 3, H, W)
        return 0.5 * (frames[:, 1] + frames[:, 2]) + residual


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: per-channel weights in (0, 1) from the channels' global means."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, max(1, channels // reduction), 1)
        self.up = nn.Conv2d(max(1, channels // reduction), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.up(F.relu(self.down(x.mean(dim=(2, 3), keepdim=True)))))  # (N, C, 1, 1)
        return x * w


class SpatialAttention(nn.Module):
    """Per-pixel weights in (0, 1) from the channel mean and max."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = _conv(2, 1, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (N, 2, H, W)
        return x * torch.sigmoid(self.conv(pooled))


class AttentionBlock(nn.Module):
    """conv-ReLU-conv, channel then spatial attention, plus the input."""

    def __init__(self, channels: int, reduction: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels))
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.spatial(self.channel(self.body(x)))


class Refinement(nn.Module):
    """``(synth, I1, I2)`` -> ``synth`` plus a residual from a stack of attention blocks."""

    def __init__(self, cfg: ConvLSTMConfig) -> None:
        super().__init__()
        c, self.s = cfg.refine_filters, cfg.space_to_depth
        self.stem = nn.Sequential(_conv(9 * self.s**2, c), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[AttentionBlock(c, cfg.reduction, cfg.spatial_kernel)
                                      for _ in range(cfg.refine_blocks)])
        self.head = _head(c, cfg.head_init, 3 * self.s**2)

    def forward(self, synth: torch.Tensor, i1: torch.Tensor, i2: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(torch.cat([synth, i1, i2], dim=1), self.s)  # (N, 9 s^2, H / s, W / s)
        x = self.stem(conv_input(x, self.head.weight))  # (N, C, H / s, W / s)
        return synth + F.pixel_shuffle(self.head(self.blocks(x)), self.s).to(synth.dtype)


class ConvLSTMNet(nn.Module):
    """``model(frames)`` with ``frames`` ``(N, 4, 3, H, W)`` = I0..I3 is the frame halfway between I1 and I2.

    Shape:
        frames: ``(N, 4, 3, H, W)`` in [0, 1], H and W multiples of ``config.divisor``.
        output: ``(N, 3, H, W)`` in [0, 1]. ``forward(..., return_aux=True)`` also returns
        ``{"synth": the synthesis network's frame, unclamped}``.
    """

    times = (0.5,)  # the only time it is trained for; the scheduler recurses for others
    context = FRAMES  # frames per window (film takes 2): the scheduler feeds windows of four

    def __init__(self, config: ConvLSTMConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConvLSTMConfig()
        self.synthesis = Synthesis(self.config)
        self.refinement = Refinement(self.config)

    @property
    def divisor(self) -> int:
        return self.config.divisor

    def forward(self, frames: torch.Tensor, return_aux: bool = False):
        if frames.dim() != 5 or frames.shape[1] != FRAMES or frames.shape[2] != 3:
            raise ValueError(f"ConvLSTMNet needs frames of shape (N, 4, 3, H, W), got {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"ConvLSTMNet input {h}x{w} is not a multiple of {self.divisor}; pad it first "
                             "(framefill.models.layers.pad_to_multiple)")
        # The convolutions run in the weights' precision and layout; the blend, the residual sums and the
        # output in float32 (a bf16 frame would be off by up to half an 8-bit level).
        in_dtype, frames = frames.dtype, frames.float()
        synth = self.synthesis(frames)  # (N, 3, H, W)
        out = self.refinement(synth, frames[:, 1], frames[:, 2]).clamp(0, 1).to(in_dtype)
        if return_aux:
            return out, {"synth": synth}
        return out


PRESETS: dict[str, ConvLSTMConfig] = {
    # The shipped default, sized for CPU training and inference (framefill bench --model convlstm times it).
    "convlstm-s": ConvLSTMConfig(),
    # Wider, for GPUs.
    "convlstm-m": ConvLSTMConfig(filters=(32, 64, 96, 128, 128), refine_filters=32, refine_blocks=3),
    # Tests only.
    "convlstm-tiny": ConvLSTMConfig(filters=(4, 8), decoder_convs=1, refine_filters=4, refine_blocks=1),
}
