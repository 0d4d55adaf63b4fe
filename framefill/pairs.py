"""The two-frame scheduler, for models that make a frame from the pair around it (``film``): a stream of frames
in, a stream at a higher frame rate out, built on ``framefill.schedule`` (timeline, snapping, cuts, duplicates).

The model. FILM knows only ``t = 0.5`` (``model.times == (0.5,)``), so other times come from recursive
bisection, as in FILM's own inference: the midpoint of the pair, then the midpoints of the halves, and so on.
Frames are memoised per pair (t = 3/8 and t = 1/4 share t = 1/2): at most ``D`` model frames per
output frame, ``2**D - 1`` per pair. A model listing other values in ``times`` is called as
``model(img0, img1, t)`` (``t`` an ``(N,)`` tensor) directly at those times; one with
``arbitrary_time = True`` directly at the exact, unsnapped ``t``.

Scene cuts and duplicates never go through the model: the in-betweens are copies of the nearer input.

Batching and memory. Frames are read until ``batch_size`` pairs need the model (or ``4 * batch_size`` pairs
are buffered); then all their work runs depth by depth, ``batch_size`` image pairs per model call, and
tensors are freed as soon as no deeper level reads them. Frames are padded once (edge replication) to
``model.divisor`` and cropped back. Inputs go to ``device`` as float32 (channels_last on CPU: faster for the
conv model), whatever the model's ``dtype``: the models convert them for their convolutions and keep their
geometry in float32 (``models.layers.conv_input``). Outputs come back as uint8 RGB on the CPU. The caller puts
the model on that device and dtype, in eval mode. A model call whose working memory would exceed
``ScheduleConfig.tiling.max_memory`` (default: what the device has free) runs in smaller batches, or else in
overlapping tiles blended without seams (``framefill.tiling``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np
import torch

from framefill import schedule
from framefill.debug import ModelFrame, pack_aux
from framefill.models.layers import crop, pad_to_multiple
from framefill.schedule import HALF, Frame, InterpolationStats, ScheduleConfig, Timeline
from framefill.tiling import TileConfig, Tiler

log = logging.getLogger(__name__)


class Runner:
    """Moves frames to the model's device/dtype and back, and calls the model on stacked batches.

    With ``aux`` (for ``--debug``) every call also asks the model for its maps (``return_aux=True``) and returns
    them after the frames' 3 channels (``debug.pack_aux``: ``AUX_CHANNELS`` more, NaN when the model has none), so
    that they go through batching and tiling with the frames.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 stats: InterpolationStats, tiling: TileConfig | None = None, aux: bool = False) -> None:
        schedule.check_dtype(dtype)
        self.model, self.device, self.dtype, self.stats = model, torch.device(device), dtype, stats
        self.aux = aux
        self.gives_aux = aux and "return_aux" in inspect.signature(model.forward).parameters
        self.divisor = int(getattr(model, "divisor", 1))
        self.arbitrary = bool(getattr(model, "arbitrary_time", False))
        self.direct = frozenset(Fraction(x) for x in getattr(model, "times", (0.5,)))
        self.takes_time = self.arbitrary or self.direct != {HALF}
        self.frame_dtype = np.dtype(np.uint8)  # the frames' type (uint16 for deep video), set by to_tensor
        self.tiler = Tiler(model, self._forward, lambda x0, x1: self.call(x0, x1, [HALF]), self.device, dtype,
                           self.divisor, tiling or TileConfig(), on_tiles=self._count_tiles)

    def is_direct(self, t: Fraction) -> bool:
        """Whether the model computes time ``t`` of a pair in one call (else: bisection)."""
        return self.arbitrary or t in self.direct

    def to_tensor(self, frame: np.ndarray) -> torch.Tensor:
        if not frame.flags.writeable or not frame.flags.c_contiguous:  # from_numpy warns on read-only arrays
            frame = np.array(frame)  # (decoder buffers) and fails on negative strides (flipped views)
        self.frame_dtype = frame.dtype  # outputs come back in the inputs' depth
        if frame.dtype == np.uint16:
            frame = frame.astype(np.int32)  # (torch reads no uint16 arrays)
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) integers
        x = x.float().div_(schedule.white(self.frame_dtype))  # (1, 3, H, W) in [0, 1]
        return pad_to_multiple(x, self.divisor)[0]  # (1, 3, Hp, Wp) float32

    def to_frame(self, x: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
        x = crop(x, hw)[0].float().clamp(0, 1).mul_(schedule.white(self.frame_dtype)).round_()  # (3, H, W)
        x = x.to(torch.uint8 if self.frame_dtype == np.uint8 else torch.int32)  # small on the way off a GPU
        # Interleaved by torch, not numpy: a copy of the permuted array by np.ascontiguousarray took about 40 ms
        # for a 720p frame on the CPU, torch's contiguous() about 5.
        x = x.permute(1, 2, 0).contiguous().cpu().numpy()  # (H, W, 3)
        return x if x.dtype == self.frame_dtype else x.astype(self.frame_dtype)

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor, t: list[Fraction]) -> torch.Tensor:
        """The frames at local times ``t`` of the pairs ``(x0[b], x1[b])``: whole, in smaller batches or tiled
        (with ``aux``, their maps after their 3 channels)."""
        out = self.tiler(x0, x1, t)
        self.stats.model_frames += len(t)
        return out

    def _forward(self, x0: torch.Tensor, x1: torch.Tensor, t: list[Fraction]) -> torch.Tensor:
        out = self.call(x0, x1, t)
        self.stats.model_calls += 1
        return out

    def call(self, x0: torch.Tensor, x1: torch.Tensor, t: list[Fraction]) -> torch.Tensor:
        """The model on one batch of padded pairs, whole and uncounted: the layout and time argument every model
        call gets (``framefill bench`` times this)."""
        if self.device.type == "cpu":
            x0 = x0.contiguous(memory_format=torch.channels_last)
            x1 = x1.contiguous(memory_format=torch.channels_last)
        kwargs = {"return_aux": True} if self.gives_aux else {}
        if self.takes_time:
            out = self.model(x0, x1, torch.tensor([float(v) for v in t], device=self.device), **kwargs)
        else:
            out = self.model(x0, x1, **kwargs)
        aux = None
        if self.gives_aux and isinstance(out, tuple):
            out, aux = out
        if out.shape != x0.shape:
            raise ValueError(f"the model returned shape {tuple(out.shape)} for inputs {tuple(x0.shape)}")
        if self.aux:  # (N, 3 + AUX_CHANNELS, H, W)
            out = torch.cat([out, pack_aux(aux if isinstance(aux, dict) else None, out.shape[0],
                                           out.shape[-2:]).to(out.dtype)], dim=1)
        return out

    def _count_tiles(self, frames: int, tiles: int) -> None:
        self.stats.tiled_frames += frames
        self.stats.tiles += tiles


def solve(runner: Runner, images: list[np.ndarray], wanted: dict[int, set[Fraction]], batch_size: int,
           on_aux: Callable[[tuple[int, Fraction], torch.Tensor], None] | None = None
           ) -> dict[tuple[int, Fraction], np.ndarray]:
    """The frames at times ``wanted[j]`` (in (0, 1)) of the pairs ``(images[j], images[j + 1])``.

    Every needed node (a wanted time or a bisection ancestor) is computed once, depth by depth,
    across all pairs, ``batch_size`` per model call. Call it under ``torch.inference_mode()``.
    ``on_aux((j, t), maps)``, with a runner made with ``aux``, gets every node's ``(AUX_CHANNELS, H, W)`` maps,
    cropped, on the CPU.
    """
    recipe: dict[tuple[int, Fraction], tuple[Fraction, Fraction, Fraction]] = {}  # node -> (left, right, local t)
    level: dict[tuple[int, Fraction], int] = {}

    def add(j: int, t: Fraction) -> int:
        if t in (0, 1):
            return 0
        if (j, t) not in level:
            if runner.is_direct(t):
                left, right, local = Fraction(0), Fraction(1), t
            else:  # t = a / 2**d with a odd: the midpoint of its neighbours on the 1 / 2**d grid
                h = Fraction(1, t.denominator)
                left, right, local = t - h, t + h, HALF
            recipe[(j, t)] = (left, right, local)
            level[(j, t)] = 1 + max(add(j, left), add(j, right))
        return level[(j, t)]

    for j, times in wanted.items():
        for t in times:
            add(j, t)
    last_use: dict[tuple[int, Fraction], int] = {}  # the deepest level that reads a node
    for node, (left, right, _) in recipe.items():
        for dep in (left, right):
            if dep not in (0, 1):
                last_use[(node[0], dep)] = max(last_use.get((node[0], dep), 0), level[node])

    hw = images[0].shape[:2]
    inputs: dict[int, torch.Tensor] = {}
    memo: dict[tuple[int, Fraction], torch.Tensor] = {}

    def get(j: int, t: Fraction) -> torch.Tensor:
        if t in (0, 1):
            idx = j + int(t)
            if idx not in inputs:
                inputs[idx] = runner.to_tensor(images[idx])
            return inputs[idx]
        return memo[(j, t)]

    out: dict[tuple[int, Fraction], np.ndarray] = {}
    for lev in sorted(set(level.values())):
        nodes = sorted(node for node, n_lev in level.items() if n_lev == lev)
        for start in range(0, len(nodes), batch_size):
            chunk = nodes[start:start + batch_size]
            x0 = torch.cat([get(j, recipe[(j, t)][0]) for j, t in chunk])  # (B, 3, Hp, Wp)
            x1 = torch.cat([get(j, recipe[(j, t)][1]) for j, t in chunk])
            y = runner(x0, x1, [recipe[node][2] for node in chunk])  # (B, 3, Hp, Wp); (B, 3 + AUX_CHANNELS, ...)
            if runner.aux:
                maps = crop(y[:, 3:], hw).float().cpu()  # (B, AUX_CHANNELS, H, W)
                y = y[:, :3].clone()  # (not a view holding the maps' memory while memoised)
                if on_aux is not None:
                    for b, node in enumerate(chunk):
                        on_aux(node, maps[b])
            for b, node in enumerate(chunk):
                memo[node] = y[b:b + 1]
        for j, t in nodes:
            if t in wanted[j]:
                out[(j, t)] = runner.to_frame(memo[(j, t)], hw)
        for node in [node for node in memo if last_use.get(node, 0) <= lev]:
            del memo[node]  # no deeper level reads it: free the memory now
    return out



def interpolate_pairs(frames: Iterator[np.ndarray], timeline: Timeline, model: torch.nn.Module,
                      config: ScheduleConfig, *, device: torch.device | str, dtype: torch.dtype,
                      on_progress: Callable[[int], None] | None, stats: InterpolationStats,
                      on_debug: Callable[[ModelFrame], None] | None = None) -> Iterator[np.ndarray]:
    """The output frames of ``framefill.interpolate.interpolate_frames`` for a two-frame model."""
    runner = Runner(model, device, dtype, stats, config.tiling, aux=on_debug is not None)
    depth = 0 if runner.arbitrary else schedule.depth_for(timeline.widest(), config.max_depth)
    return _generate(frames, timeline, depth, runner, config, stats, on_progress, on_debug)


def _generate(frames: Iterator[np.ndarray], timeline: Timeline, depth: int, runner: Runner, config: ScheduleConfig,
              stats: InterpolationStats, on_progress: Callable[[int], None] | None,
              on_debug: Callable[[ModelFrame], None] | None = None) -> Iterator[np.ndarray]:
    window: list[Frame] = []
    plans: list[list[tuple[int, Fraction | None]]] = []  # per pair: (0 | 1, None) = copy that frame, (0, t) = model
    busy = 0  # pairs in the window that need the model
    detect = config.detect_scenes or config.skip_duplicates

    def emit(image: np.ndarray) -> np.ndarray:
        stats.frames_out += 1
        if on_progress is not None:
            on_progress(stats.frames_out)
        return image

    def plan_pair(a: Frame, b: Frame) -> list[tuple[int, Fraction | None]]:
        kind = schedule.pair_kind(a, b, config)
        if kind != "motion":
            log.debug("frames %d-%d: %s", a.index, b.index, kind)
            stats.pairs_duplicate += kind == "duplicate"
            stats.scene_cuts += kind == "cut"
        plan: list[tuple[int, Fraction | None]] = []
        for t in timeline.pair_times(a.index):
            if t == 0 or kind != "motion":
                plan.append((0 if t < HALF else 1, None))
                continue
            snapped, err = (t, Fraction(0)) if runner.arbitrary else schedule.snap_time(t, depth)
            stats.max_timing_error = max(stats.max_timing_error, float(err))
            plan.append((int(snapped), None) if snapped in (0, 1) else (0, snapped))
        return plan

    def debug_hook() -> Callable[[tuple[int, Fraction], torch.Tensor], None] | None:
        """``on_debug`` for the nodes of this window: the output frames each is, counted from the next one out."""
        if on_debug is None:
            return None
        outputs: dict[tuple[int, Fraction], list[int]] = {}
        k = stats.frames_out
        for j, plan in enumerate(plans):
            for _, t in plan:
                if t is not None:
                    outputs.setdefault((j, t), []).append(k)
                k += 1
        first = window[0].index
        return lambda node, maps: on_debug(ModelFrame(first + node[0], node[1], tuple(outputs.get(node, ())), maps))

    def flush() -> Iterator[np.ndarray]:
        wanted = {j: {t for _, t in plan if t is not None} for j, plan in enumerate(plans)}
        wanted = {j: times for j, times in wanted.items() if times}
        stats.pairs_interpolated += len(wanted)
        with torch.inference_mode():  # never across a yield: the mode would leak into the caller
            made = solve(runner, [f.image for f in window], wanted, config.batch_size, debug_hook())
        for j, plan in enumerate(plans):
            for side, t in plan:
                yield emit(window[j + side].image if t is None else made[(j, t)])

    for index, image in enumerate(frames):
        image = schedule.check_frame(image, index, window[0].image if window else None, deep=True)
        stats.frames_in += 1
        thumb, hist = schedule.thumbnail(image) if detect else (None, None)
        frame = Frame(index, image, thumb, hist)
        if window:
            plans.append(plan_pair(window[-1], frame))
            busy += any(t is not None for _, t in plans[-1])
        window.append(frame)
        if busy >= config.batch_size or len(plans) >= 4 * config.batch_size:
            yield from flush()
            window, plans, busy = window[-1:], [], 0
    n_in = stats.frames_in
    if n_in < 2:
        raise ValueError(f"need at least 2 frames to interpolate, got {n_in}")
    if plans:
        yield from flush()
    if timeline.ends_on_last(n_in):
        yield emit(window[-1].image)



def interpolate_one_pair(img0: np.ndarray, img1: np.ndarray, model: torch.nn.Module, t: Fraction, *, max_depth: int,
                         device: torch.device | str, dtype: torch.dtype, tiling: TileConfig | None,
                         stats: InterpolationStats, on_debug: Callable[[ModelFrame], None] | None = None
                         ) -> np.ndarray:
    """The frame at time ``t`` of one pair for a two-frame model (``framefill.interpolate.interpolate_pair``)."""
    runner = Runner(model, device, dtype, stats, tiling, aux=on_debug is not None)
    snapped = t if runner.arbitrary else schedule.snap_time(t, max_depth)[0]
    if snapped in (0, 1):
        return (img0 if snapped == 0 else img1).copy()

    def hook(node: tuple[int, Fraction], maps: torch.Tensor) -> None:
        if on_debug is not None:
            on_debug(ModelFrame(0, node[1], (0,) if node[1] == snapped else (), maps))

    with torch.inference_mode():
        return solve(runner, [img0, img1], {0: {snapped}}, batch_size=1, on_aux=hook)[(0, snapped)]
