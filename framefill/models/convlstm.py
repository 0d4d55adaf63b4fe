"""The ConvLSTM interpolator (Suzuki and Ikehara, "Residual Learning of Video Frame Interpolation Using
Convolutional LSTM", IEEE Access 2020) on a motion-compensated window: four frames in, the frame halfway between
the middle two out.

Given I0, I1, I2, I3 (equally spaced), the network predicts I1.5 (t = 0.5 of the pair I1, I2; the scheduler
recurses for other times). The paper's network synthesises that frame from the four raw frames, as a residual
over the blend of I1 and I2; it must then learn motion from data alone, which 2 CPU cores cannot teach it (the
first version of this model, trained so, stayed at the blend). Here it keeps its two stages but reads the window
aligned to time t by film's flows, and adds its residual to film's own output:

1. ``film``: a ``Film`` sub-model (``ConvLSTMConfig.film``) on (I1, I2) gives the base frame and its full-resolution
   flows ``flow_10`` (I2's grid into I1) and ``flow_01``, both ``(N, 2, H, W)``.
2. ``align_window``: each frame of the window backward-warped to t = 1.5 (window time, I1 at 1). The middle pair by
   FILM's approximation (``0.5 flow_10``, ``0.5 flow_01``; film's own output now warps along the symmetric motion
   at t where it trusts it, ``framefill.models.time_flow``, so this pair can differ from film's there); the outer
   frames by the same flows scaled by 1.5, the constant-velocity motion from t to a frame 1.5 intervals away
   (``1.5 flow_10`` for I0, ``1.5 flow_01`` for I3).
   Scaling, not chaining a flow I1 -> I0 from a second film run: two more flow estimations would make a frame
   about three times film's cost, and what the outer frames add, the curvature of the motion and what the middle
   frames occlude, shows exactly where the scaled warp misses (the warp error the network reads). An outer frame
   that is a copy of its neighbour (the scheduler's stand-in at a clip's ends, at cuts and duplicates; training's
   ``DataConfig.edge_prob``) carries nothing: its aligned frame is the neighbour's aligned frame.
3. ``Synthesis``: a U-Net whose encoder runs over the four aligned frames with shared weights (time folded into
   the batch), each time step reading ``(aligned frame, aligned frame - film's output)`` (6 channels); at every
   encoder level a ``ConvLSTMCell`` carries the level's features through time, I0 first, from a zero state, and
   its hidden state after I3 is that level's skip connection. The decoder's 3x3 head predicts the residual over
   film's output: ``synth = film + r``.
4. ``Refinement``: over ``(synth, aligned I1, aligned I2)`` (9 channels), a 3x3 stem, ``refine_blocks`` attention
   blocks and a 3x3 head adding a residual to ``synth``. Each block is conv-ReLU-conv, then channel attention
   (squeeze-and-excitation: global mean, 1x1 down by ``reduction``, ReLU, 1x1 up, sigmoid) and spatial attention
   (channel mean and max, a 7x7 conv, sigmoid), each multiplying the features, plus the block's input.

Both residual heads start at exactly zero, so an untrained model's output *is* film's output, and training can
only start from there. The film part is frozen: it gets no gradients and runs without autograd (a cheaper step);
``framefill train --model convlstm --film-weights weights/film.safetensors`` loads the shipped film into it. Its
weights are stored in the convlstm file (``film.*``), which is therefore self-contained.

Training loss (``framefill.train.loop``): ``0.5 L1(synth) + L1(refined)`` (robust L1), plus the census and
Laplacian terms that the film training uses.

Choices the paper leaves open, fixed here: widths ``filters`` per level, one ConvLSTM per level with as many
hidden channels as the level's features, gates from one 3x3 conv over ``[x, h]`` (input, forget, output,
candidate), the forget gate's bias starting at 1; a single pass over time (I0 -> I3); 2x average pooling between
encoder levels, bilinear upsampling in the decoder, ReLU; reduction 4 in the channel attention, a 7x7
spatial-attention kernel (as in CBAM). Both networks run on ``space_to_depth`` x ``space_to_depth`` pixel blocks
folded into channels (pixel unshuffle in, pixel shuffle out): a residual over film's frame needs less resolution
than a frame made from scratch, and this keeps a 720p frame within twice film's CPU time.

Size divisibility: H and W must be multiples of ``ConvLSTMConfig.divisor`` (the larger of film's and
``space_to_depth * 2 ** (len(filters) - 1)``); the scheduler pads and crops back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from framefill.models.film import PRESETS as FILM_PRESETS
from framefill.models.film import Film, FilmConfig
from framefill.models.layers import conv_input, warp
from framefill.models.window_motion import WindowGate, read_shift, window_evidence, window_flows

FRAMES = 4  # frames in a window: I0, I1, I2, I3
OUTER_SCALE = 1.5  # t = 1.5 lies 1.5 frame intervals from I0 and from I3: their flows scaled by this


@dataclass(frozen=True)
class ConvLSTMConfig:
    film: FilmConfig = field(default_factory=FilmConfig)  # the film sub-model (flows, aligned pair, base frame)
    filters: tuple[int, ...] = (16, 24, 32)  # encoder/ConvLSTM channels per level, finest first
    decoder_convs: int = 1  # 3x3 convs per decoder level
    refine_filters: int = 16  # channels of the refinement network
    refine_blocks: int = 1  # attention blocks in the refinement network
    reduction: int = 4  # channel-attention (squeeze-and-excitation) reduction ratio
    spatial_kernel: int = 7  # spatial-attention conv size
    space_to_depth: int = 4  # both networks run on s x s pixel blocks folded into channels (1: full resolution)
    window_filters: int = 0  # channels of the window motion's gate (0: none; framefill.models.window_motion)
    window_reach: float = 1.0  # the gate's widest opening, in multiples of the a / 8 the outer frames measure
    window_trajectory: bool = False  # the gate also reads how well the straight and the curved path fit I0 and I3
    window_level: int = 2  # the gate's resolution: 1 / 2**window_level of the frame's (1: the flows' own)

    def __post_init__(self) -> None:
        if isinstance(self.film, dict):  # rebuilt from a weights file's config JSON
            object.__setattr__(self, "film", FilmConfig(**self.film))
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        if len(self.filters) < 1 or any(f < 1 for f in self.filters):
            raise ValueError(f"filters must be positive channel counts, got {self.filters}")
        if self.reduction < 1 or self.refine_filters < self.reduction:
            raise ValueError(f"need 1 <= reduction <= refine_filters, got {self.reduction} and {self.refine_filters}")
        if self.space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {self.space_to_depth}")
        if self.spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be odd, got {self.spatial_kernel}")
        if self.window_level not in (1, 2):
            raise ValueError(f"window_level must be 1 or 2, got {self.window_level}")
        if self.film.arbitrary_time:
            raise ValueError("the film part of convlstm is asked for t = 0.5 only; give it a t = 0.5 film config")

    @property
    def divisor(self) -> int:
        return math.lcm(self.film.divisor, self.space_to_depth * 2 ** (len(self.filters) - 1))

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _zero_head(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3 output conv that starts at exactly zero: an untrained model adds nothing to film's frame."""
    conv = _conv(cin, cout)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def align_window(frames: torch.Tensor, flow_10: torch.Tensor, flow_01: torch.Tensor) -> torch.Tensor:
    """The window's frames backward-warped to the middle of I1 and I2 by film's flows (see the module docstring).

    An outer frame equal to its neighbour (a copy standing in for a missing frame) is replaced by the neighbour's
    aligned frame: warping a copy by 1.5 times the flow would only overshoot.

    Shape:
        frames: ``(N, 4, 3, H, W)``; flow_10, flow_01: ``(N, 2, H, W)`` between I1 and I2 (film's convention:
        ``I1[y, x] ~ I2[y + f_01]``, ``I2[y, x] ~ I1[y + f_10]``); returns ``(N, 4, 3, H, W)``.
    """
    n = frames.shape[0]
    flows = torch.cat([flow_10, flow_01])  # (2N, 2, H, W): toward I1 (and I0), toward I2 (and I3)
    middle = warp(torch.cat([frames[:, 1], frames[:, 2]]), 0.5 * flows)  # (2N, 3, H, W): FILM's approximation
    outer = warp(torch.cat([frames[:, 0], frames[:, 3]]), OUTER_SCALE * flows)  # (2N, 3, H, W)
    copy = torch.cat([_same(frames[:, 0], frames[:, 1]), _same(frames[:, 3], frames[:, 2])])  # (2N, 1, 1, 1)
    outer = torch.where(copy, middle, outer)
    return torch.stack([outer[:n], middle[:n], middle[n:], outer[n:]], dim=1)


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per sample, whether ``a`` and ``b`` are identical: ``(N, 1, 1, 1)`` bool."""
    return (a == b).flatten(1).all(dim=1).view(-1, 1, 1, 1)


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
    """The U-Net with ConvLSTM skips: the aligned window and film's frame -> the residual over film's frame.

    Shape:
        aligned: ``(N, 4, 3, H, W)``; base: ``(N, 3, H, W)``; returns ``(N, 3, H, W)`` float32.
    """

    def __init__(self, cfg: ConvLSTMConfig) -> None:
        super().__init__()
        f = list(cfg.filters)
        self.s = cfg.space_to_depth
        self.encoder = nn.ModuleList(
            nn.Sequential(_conv(6 * self.s**2 if j == 0 else f[j - 1], f[j]), nn.ReLU(inplace=True), _conv(f[j], f[j]),
                          nn.ReLU(inplace=True)) for j in range(len(f)))
        self.cells = nn.ModuleList(ConvLSTMCell(in_channels=c, hidden=c) for c in f)
        self.decoder = nn.ModuleList()
        for j in range(len(f) - 1):  # level j takes the upsampled level j + 1 and skip j
            convs: list[nn.Module] = [_conv(f[j + 1] + f[j], f[j]), nn.ReLU(inplace=True)]
            for _ in range(cfg.decoder_convs - 1):
                convs += [_conv(f[j], f[j]), nn.ReLU(inplace=True)]
            self.decoder.append(nn.Sequential(*convs))
        self.head = _zero_head(f[0], 3 * self.s**2)

    def forward(self, aligned: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        n, t = aligned.shape[:2]
        steps = torch.cat([aligned, aligned - base.unsqueeze(1)], dim=2)  # (N, 4, 6, H, W): frame, warp error
        x = F.pixel_unshuffle(steps.flatten(0, 1), self.s)  # (4N, 6 s^2, H / s, W / s): time in the batch
        x = conv_input(x, self.head.weight)
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
        return F.pixel_shuffle(self.head(y), self.s).float()  # (N, 3, H, W)


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
    """``(synth, aligned I1, aligned I2)`` -> ``synth`` plus a residual from a stack of attention blocks."""

    def __init__(self, cfg: ConvLSTMConfig) -> None:
        super().__init__()
        c, self.s = cfg.refine_filters, cfg.space_to_depth
        self.stem = nn.Sequential(_conv(9 * self.s**2, c), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[AttentionBlock(c, cfg.reduction, cfg.spatial_kernel)
                                      for _ in range(cfg.refine_blocks)])
        self.head = _zero_head(c, 3 * self.s**2)

    def forward(self, synth: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(torch.cat([synth, a1, a2], dim=1), self.s)  # (N, 9 s^2, H / s, W / s)
        x = self.stem(conv_input(x, self.head.weight))  # (N, C, H / s, W / s)
        return synth + F.pixel_shuffle(self.head(self.blocks(x)), self.s).float()


class ConvLSTMNet(nn.Module):
    """``model(frames)`` with ``frames`` ``(N, 4, 3, H, W)`` = I0..I3 is the frame halfway between I1 and I2.

    Shape:
        frames: ``(N, 4, 3, H, W)`` in [0, 1], H and W multiples of ``config.divisor``.
        output: ``(N, 3, H, W)`` in [0, 1]. ``forward(..., return_aux=True)`` also returns ``{"synth": the
        synthesis stage's frame (unclamped), "film": film's frame, "aligned": the aligned window (N, 4, 3, H, W),
        "flow_10", "flow_01": film's flows}``.
    """

    times = (0.5,)  # the only time it is trained for; the scheduler recurses for others
    context = FRAMES  # frames per window (film takes 2): the scheduler feeds windows of four

    def __init__(self, config: ConvLSTMConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConvLSTMConfig()
        self.film = Film(self.config.film)
        self.film.requires_grad_(False)  # frozen: trained on its own, loaded with --film-weights
        self.synthesis = Synthesis(self.config)
        self.refinement = Refinement(self.config)
        self.gate = (WindowGate(self.config.window_filters, self.config.window_reach, self.config.window_trajectory)
                     if self.config.window_filters else None)

    @property
    def divisor(self) -> int:
        return self.config.divisor

    @classmethod
    def refuse_config(cls, config: dict) -> str | None:
        """Why a weights file's config cannot be this model's, or None (``load_model`` asks before building)."""
        if "film" not in config:
            return ("holds convlstm weights of the first, flow-free design, which this version no longer reads "
                    "(convlstm now runs on film's flows); train new ones (README: Training)")
        return None

    def load_film(self, path: Path) -> None:
        """Load the film part from a film weights file (``framefill train --film-weights``); its config must be
        this model's ``config.film``."""
        from framefill.checkpoint import WeightsError, load_safetensors  # (not the model registry: it imports us)

        tensors, meta = load_safetensors(Path(path))
        if meta.get("architecture") != "film":
            raise WeightsError(f"{path} holds a {meta.get('architecture')!r} model, not 'film'")
        try:
            config = FilmConfig(**json.loads(meta.get("config", "{}")))
        except (ValueError, TypeError) as e:
            raise WeightsError(f"{path}: bad film config in metadata: {e}") from None
        if config != self.config.film:
            diff = {k: v for k, v in config.to_dict().items() if self.config.film.to_dict()[k] != v}
            raise WeightsError(f"{path} is a film of another config than this convlstm's film part (differs in "
                               f"{sorted(diff)}); pick the convlstm preset that matches it")
        own = self.film.state_dict()
        self.film.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})

    def forward(self, frames: torch.Tensor, return_aux: bool = False):
        if frames.dim() != 5 or frames.shape[1] != FRAMES or frames.shape[2] != 3:
            raise ValueError(f"ConvLSTMNet needs frames of shape (N, 4, 3, H, W), got {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"ConvLSTMNet input {h}x{w} is not a multiple of {self.divisor}; pad it first "
                             "(framefill.models.layers.pad_to_multiple)")
        # The convolutions run in the weights' precision and layout; film's geometry, the alignment, the residual
        # sums and the output in float32 (a bf16 frame would be off by up to half an 8-bit level).
        in_dtype, frames = frames.dtype, frames.float()
        n = frames.shape[0]
        training = torch.is_grad_enabled()
        with torch.no_grad():  # film is frozen: no graph through it (nor through the gate, trained on its own)
            shift = self.window_shift(frames) if self.gate is not None else None
            base, film_aux = self.film(frames[:, 1], frames[:, 2], return_aux=True, read_shift=shift)
            flows = film_aux["flows"][0]  # (2N, 2, H, W): flow_10 then flow_01, at full resolution
            # A residual stage whose head is zero adds exactly nothing: skipped outside training (and the window's
            # alignment with it when neither acts), so that weights that trained the gate alone cost no more.
            acts = [training or bool(part.head.weight.any() or part.head.bias.any())
                    for part in (self.synthesis, self.refinement)]
            aligned = align_window(frames, flows[:n], flows[n:]) if any(acts) or return_aux else None
        base = base.float()
        synth = base + self.synthesis(aligned, base) if acts[0] else base  # (N, 3, H, W)
        out = self.refinement(synth, aligned[:, 1], aligned[:, 2]) if acts[1] else synth
        out = out.clamp(0, 1).to(in_dtype)
        if return_aux:
            return out, {"synth": synth, "film": base, "aligned": aligned, "flow_10": flows[:n], "flow_01": flows[n:]}
        return out


    def window_shift(self, frames: torch.Tensor, keep: dict | None = None) -> torch.Tensor | None:
        """The gated correction of film's reads from the window (``window_motion``), ``(N, 4, H, W)``; None where the
        gate is closed everywhere (film as it is). ``keep`` receives the gate's ``inputs`` and the correction ``a``."""
        valid = torch.cat([~_same(frames[:, 0], frames[:, 1]), ~_same(frames[:, 3], frames[:, 2])], dim=1).float()
        flows = window_flows(self.film, frames, self.config.window_level)
        x, a = window_evidence(frames, flows, valid, self.config.window_trajectory)
        if keep is not None:
            keep.update(inputs=x, a=a)
        gate = self.gate(conv_input(x, self.gate.head.weight)).float()
        return read_shift(gate, a) if bool((gate > 0).any()) else None


PRESETS: dict[str, ConvLSTMConfig] = {
    # The default, sized for the CPU, on the shipped film (film-s with its selector and sharpener): film-s plus at
    # most film's own time again per 720p frame (framefill bench).
    "convlstm-s": ConvLSTMConfig(film=replace(FILM_PRESETS["film-s"], selector_filters=16, sharpen_filters=16),
                                 window_filters=16, window_trajectory=True),
    # Wider, for GPUs, on film-m.
    "convlstm-m": ConvLSTMConfig(film=FILM_PRESETS["film-m"], filters=(32, 64, 96, 128), decoder_convs=2,
                                 refine_filters=32, refine_blocks=3, space_to_depth=2, window_filters=24,
                                 window_trajectory=True),
    # Tests only, on film-tiny.
    "convlstm-tiny": ConvLSTMConfig(film=FILM_PRESETS["film-tiny"], filters=(4, 8), refine_filters=4,
                                    space_to_depth=2, window_filters=4),
}
