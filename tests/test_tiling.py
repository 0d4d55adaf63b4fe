"""Tiled inference: layouts, blending weights, the memory estimate and budget, tiled against untiled, and the CLI.

Tiny models and frames (film-tiny, a stub of radius 1, frames under 140 px) on one torch thread.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_error, make_clip, plain, psnr, save_tiny_film
from typer.testing import CliRunner

import framefill.memory
from framefill.cli import UsageError, app, parse_memory
from framefill.interpolate import InterpolationStats, ScheduleConfig, interpolate_frames, interpolate_pair
from framefill.memory import CPU_OVERHEAD, TensorBytes, bytes_per_pixel, device_headroom
from framefill.models.film import build_film
from framefill.tiling import (
    TileConfig,
    TileGrid,
    Tiler,
    axis_starts,
    axis_weights,
    default_overlap,
    plan_grid,
    run_tiles,
)
from framefill.video import probe, read_image, write_image

CPU = torch.device("cpu")
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


class Blur(torch.nn.Module):
    """t = 0.5 stub of receptive-field radius 1: a 3x3 box mean (edges replicated) of the average of the inputs.

    Records the batch size of every call."""

    times = (0.5,)
    divisor = 4

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        self.batches.append(img0.shape[0])
        mid = F.pad((img0 + img1) / 2, (1, 1, 1, 1), mode="replicate")
        return F.avg_pool2d(mid, 3, stride=1)


def texture(h: int, w: int, seed: int = 0, pan: int = 8) -> np.ndarray:
    """A smooth random RGB texture ``(h + pan, w + pan, 3)`` uint8 (cubic upsampling of coarse noise)."""
    rng = np.random.default_rng(seed)
    noise = rng.random(((h + pan) // 6 + 3, (w + pan) // 6 + 3, 3)).astype(np.float32)
    big = cv2.resize(noise, (w + pan, h + pan), interpolation=cv2.INTER_CUBIC)
    return (np.clip(big, 0, 1) * 255).astype(np.uint8)


def tiler(model: torch.nn.Module, config: TileConfig, calls: list[int] | None = None) -> Tiler:
    """A Tiler around ``model`` as the scheduler builds one (fp32, CPU), counting calls in ``calls``."""
    calls = [] if calls is None else calls

    def forward(x0: torch.Tensor, x1: torch.Tensor, times: list) -> torch.Tensor:
        calls.append(x0.shape[0])
        return model(x0, x1)

    return Tiler(model, forward, lambda x0, x1: model(x0, x1), CPU, torch.float32, int(model.divisor), config)


# --- layout and weights -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [4, 40, 100, 136, 4320, 7680])
@pytest.mark.parametrize(("tile", "overlap", "align"), [(16, 8, 4), (32, 14, 4), (64, 32, 32), (2048, 256, 32)])
def test_axis_starts_cover_the_axis_on_the_grid_with_the_overlap(length: int, tile: int, overlap: int,
                                                                 align: int) -> None:
    length = -(-length // align) * align  # the scheduler pads frames to the divisor
    starts = axis_starts(length, tile, overlap, align)
    assert starts is not None
    if tile >= length:
        assert starts == (0,)
        return
    assert starts[0] == 0 and starts[-1] + tile == length and list(starts) == sorted(set(starts))
    assert all(s % align == 0 for s in starts)
    assert all(a + tile - b >= overlap for a, b in zip(starts, starts[1:], strict=False))


def test_axis_starts_refuses_a_tile_without_room_beyond_the_overlap() -> None:
    assert axis_starts(64, 16, 16, 4) is None and axis_starts(64, 16, 13, 4) is None
    assert axis_starts(64, 16, 12, 4) == tuple(range(0, 49, 4))


@pytest.mark.parametrize(("height", "width", "max_pixels", "overlap", "align"), [
    (76, 136, 1600, 16, 4), (76, 136, 900, 8, 4), (28, 40, 256, 4, 4), (2176, 3840, 2_000_000, 256, 32),
    (13, 37, 100, 3, 1),
])
def test_blending_weights_sum_to_one_and_tiles_cover_the_frame(height: int, width: int, max_pixels: int, overlap: int,
                                                               align: int) -> None:
    grid = plan_grid(height, width, max_pixels, overlap, align)
    assert grid is not None and len(grid) > 1
    assert grid.tile_h * grid.tile_w <= max_pixels and grid.tile_h % align == 0 and grid.tile_w % align == 0
    assert grid.overlap >= overlap
    rows, cols = (w.double() for w in grid.weights(CPU))
    total = torch.zeros(height, width, dtype=torch.float64)
    covered = torch.zeros(height, width, dtype=torch.int64)
    for i, j, y, x in grid.boxes():
        weight = rows[i][:, None] * cols[j][None, :]  # (th, tw)
        assert weight.min() >= 0
        total[y:y + grid.tile_h, x:x + grid.tile_w] += weight
        covered[y:y + grid.tile_h, x:x + grid.tile_w] += 1
    assert covered.min() >= 1
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)


def test_weights_leave_out_the_tile_edge_next_to_a_neighbour() -> None:
    weights = axis_weights(32, (0, 16, 32))  # 16 px overlaps: the quarter next to an inner edge weighs 0
    assert np.all(weights[0][:28] > 0) and np.all(weights[0][28:] == 0)  # right edge of tile 0
    assert np.all(weights[1][:4] == 0) and np.all(weights[1][-4:] == 0) and np.all(weights[1][4:28] > 0)
    assert np.all(weights[2][:4] == 0) and weights[2][-1] == 1  # the frame border keeps full weight
    assert np.array_equal(weights[0][:8], np.ones(8))  # full weight up to the blend zone


def test_plan_grid_picks_the_cheapest_layout_and_none_when_nothing_fits() -> None:
    grid = plan_grid(4320, 7680, 8_000_000, 256, 32)  # 8K in 8 Mpx tiles: full-height strips
    assert grid is not None and (grid.tile_h, len(grid.ys)) == (4320, 1) and grid.tile_h * grid.tile_w <= 8_000_000
    work = len(grid) * grid.tile_h * grid.tile_w / (4320 * 7680)
    assert work < 1.25  # the overlap's cost
    assert plan_grid(64, 64, 64 * 64, 8, 4) == TileGrid(64, 64, 64, 64, (0,), (0,))
    assert plan_grid(64, 64, 15, 8, 4) is None  # no tile of a divisor squared fits


def test_default_overlap_follows_the_models_largest_motion() -> None:
    assert build_film("film-s").config.max_motion == 252 and default_overlap(build_film("film-s"), 32) == 256
    assert default_overlap(build_film("film-tiny"), 4) == 16  # max_motion 14, rounded up to the divisor
    assert default_overlap(Blur(), 4) == 128  # no stated max_motion
    assert default_overlap(build_film("film-m"), 64) == 256  # 508 px, capped


# --- tiled against untiled ----------------------------------------------------------------------------------------


def test_tiled_equals_untiled_for_a_local_model_on_an_odd_frame() -> None:
    model = Blur()
    a, b = texture(53, 91)[:53, :91], texture(53, 91, seed=1)[:53, :91]  # odd size: padded to 56 x 92
    whole = interpolate_pair(a, b, model)
    for config in (TileConfig(tile=24, overlap=8), TileConfig(tile=16, overlap=4)):
        stats = InterpolationStats()
        tiled = interpolate_pair(a, b, model, tiling=config, stats=stats)
        assert tiled.shape == (53, 91, 3) and stats.tiled_frames == 1 and stats.tiles > 1
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # rounding to 8 bits, at most
    # In floats: the same up to float32 rounding of the weights (radius 1 <= overlap / 4).
    x0, x1 = torch.rand(2, 3, 56, 92, generator=torch.Generator().manual_seed(0)).unbind(0)
    x0, x1 = x0[None], x1[None]
    grid = TileGrid(56, 92, 24, 24, axis_starts(56, 24, 8, 4), axis_starts(92, 24, 8, 4))
    tiled = run_tiles(lambda p, q, t: model(p, q), x0, x1, [0.5], grid, per_call=5)
    assert (tiled - model(x0, x1)).abs().max() < 1e-6


def test_real_film_tiny_tiled_matches_untiled_on_small_motion() -> None:
    """film-tiny (seeded, untrained: its frame is the Lucas-Kanade-warped blend) on a 75x133 texture panning
    (2, 1) px, in 32 px tiles sharing 16 px (its default overlap: max_motion 14 px).

    Exactness is not expected: the flow at a pixel depends on Lucas-Kanade windows (5 px) and flow smoothing
    (3 px) at the coarsest of its 3 levels, a reach of up to (5 + 3) * 4 = 32 px at full resolution, more than
    the 4 px of context a blended tile pixel is sure to have (overlap / 4). At 2 px of motion the differences are
    rounding-sized: measured, at most 3 levels of 255, 0.12 on average, 57 dB PSNR against the untiled frame (32 px
    tiles); 1 level, 0.07, 60 dB (the 2 MiB budget: 15 tiles of 56x28). The bounds (5 levels, 0.25 on average,
    50 dB) leave room for other float rounding and still catch a seam or a misplaced tile, which move pixels by
    tens of levels; the plain blend of the inputs, for scale, is 34 dB from the model's frame.
    """
    torch.manual_seed(0)
    model = build_film("film-tiny").eval()
    tex = texture(75, 133)
    a, b = np.ascontiguousarray(tex[:75, :133]), np.ascontiguousarray(tex[1:76, 2:135])
    whole = interpolate_pair(a, b, model)
    for config in (TileConfig(tile=32), TileConfig(max_memory=2 * 2**20)):
        stats = InterpolationStats()
        tiled = interpolate_pair(a, b, model, tiling=config, stats=stats)
        assert stats.tiles > 4
        diff = np.abs(tiled.astype(int) - whole.astype(int))
        assert diff.max() <= 5 and diff.mean() < 0.25 and psnr(tiled, whole) > 50, (config, diff.max(), diff.mean())
    blend = ((a.astype(int) + b) // 2).astype(np.uint8)  # a seam-free but wrong frame is far from it
    assert psnr(blend, whole) < 40


# --- the memory estimate and budget ------------------------------------------------------------------------------


def test_tensor_bytes_sees_the_peak_of_short_lived_tensors() -> None:
    with TensorBytes() as tracked:
        a = torch.ones(1000, dtype=torch.float32)  # 4,000 B
        b = torch.ones(2000, dtype=torch.float64)  # 16,000 B
        view = b[:10]  # a view: no new bytes
        del a, b
        c = torch.ones(500, dtype=torch.uint8)  # 500 B
    assert tracked.peak == 20_000 and tracked.live == 16_500  # the view keeps b's storage alive
    del view, c
    assert tracked.live == 0


def test_the_estimate_is_per_pixel_and_cached() -> None:
    model = build_film("film-tiny").eval()
    calls = []

    def call(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x0.shape))
        return model(x0, x1)

    first = bytes_per_pixel(model, call, CPU, torch.float32, 4)
    assert bytes_per_pixel(model, call, CPU, torch.float32, 4) == first and calls == [(1, 3, 128, 128)]
    x0, x1 = torch.rand(2, 1, 3, 96, 200).unbind(0)  # another size and shape
    with torch.inference_mode(), TensorBytes() as tracked:
        model(x0, x1)
    # The figure scales with the pixels (within the 2% that the model's per-size cache of warp grids adds to the
    # first call at a size: the probe's, or this one's).
    assert first * 96 * 200 == pytest.approx(tracked.peak * CPU_OVERHEAD, rel=0.025)


def test_a_call_planned_under_a_budget_stays_under_it(caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything a tiled call allocates (crops, the model, the blending buffers) is in the plan.

    With ``CPU_OVERHEAD`` at 1 the estimate is in the tracker's own units, so the tracked peak must stay under the
    budget, and close to it (the plan uses the room it has)."""
    monkeypatch.setattr(framefill.memory, "CPU_OVERHEAD", 1.0)
    torch.manual_seed(0)
    model = build_film("film-tiny").eval()
    x0, x1 = torch.rand(2, 2, 3, 76, 136).unbind(0)  # two pairs of 136x76 frames
    budget = 2**20  # a pair needs about 5.5 MiB (about 540 B/px): tiles
    calls: list[int] = []
    run = tiler(model, TileConfig(max_memory=budget), calls)
    with caplog.at_level(logging.INFO):
        first = run(x0, x1, [0.5, 0.5])  # outside the measurement: the probe, and the warp grids the model caches
    assert len(calls) > 2 and "tiles of" in caplog.text
    with torch.inference_mode(), TensorBytes() as tracked:
        out = run(x0, x1, [0.5, 0.5])
    assert torch.equal(out, first)
    assert 0.7 * budget < tracked.peak <= budget


def test_pairs_that_fit_one_by_one_run_in_smaller_batches_not_tiles() -> None:
    model = Blur()
    x0, x1 = torch.rand(2, 3, 3, 64, 64).unbind(0)  # three pairs
    run = tiler(model, TileConfig())
    pair = 64 * 64 * run.pixel_cost()
    calls: list[int] = []
    run = tiler(model, TileConfig(max_memory=int(2.5 * pair)), calls)
    out = run(x0, x1, [0.5] * 3)
    assert calls == [2, 1] and torch.equal(out, model(x0, x1))


def test_a_budget_below_the_smallest_tile_runs_over_it_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    model = Blur()
    calls: list[int] = []
    x0, x1 = torch.rand(2, 1, 3, 20, 28).unbind(0)
    with caplog.at_level(logging.WARNING):
        out = tiler(model, TileConfig(max_memory=1), calls)(x0, x1, [0.5])
    assert out.shape == x0.shape and len(calls) == 4 * 6  # 8x8 tiles (twice the divisor) every 4 px, one a call
    assert "running over it" in caplog.text
    assert "a memory budget of 1 B is less than" in caplog.text  # the budget given, not what is left of it


def test_interpolate_frames_under_a_budget_keeps_counts_and_sizes() -> None:
    torch.manual_seed(0)
    model = build_film("film-tiny").eval()
    tex = texture(37, 61, pan=12)
    frames = [np.ascontiguousarray(tex[:37, 2 * i:2 * i + 61]) for i in range(4)]
    stats = InterpolationStats()
    config = ScheduleConfig(factor=2, batch_size=2, detect_scenes=False, tiling=TileConfig(max_memory=2**20))
    out = list(interpolate_frames(frames, 24, model, config, stats=stats))
    assert len(out) == 7 and all(f.shape == (37, 61, 3) for f in out) and out[0] is frames[0]
    assert stats.tiled_frames == stats.model_frames == 3 and stats.model_calls > 3


# --- the command line ---------------------------------------------------------------------------------------------


def test_cpu_headroom_counts_the_memory_malloc_keeps_for_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    gib = 2**30
    monkeypatch.setattr(framefill.memory, "_meminfo_available", lambda: gib)
    monkeypatch.setattr(framefill.memory, "held_free_bytes", lambda: 0)
    alone = device_headroom(torch.device("cpu"))
    monkeypatch.setattr(framefill.memory, "held_free_bytes", lambda: gib // 2)  # freed tensors of earlier frames
    assert alone == int(gib * 0.9) - 256 * 2**20
    assert device_headroom(torch.device("cpu")) == int(1.5 * gib * 0.9) - 256 * 2**20


def test_parse_memory() -> None:
    assert parse_memory("2G") == 2 * 2**30 and parse_memory("512M") == 512 * 2**20
    assert parse_memory("1.5GiB") == 3 * 2**29 and parse_memory(" 800 mb ") == 800 * 2**20
    assert parse_memory("64k") == 65536 and parse_memory("1048576") == 2**20 and parse_memory("1T") == 2**40
    for bad in ("lots", "-1G", "2X", "", "G", "5ib", "1e9", "0", "0.1"):
        with pytest.raises(UsageError, match="is not a memory size"):
            parse_memory(bad)



@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_film(tmp_path_factory.mktemp("weights") / "film-tiny.safetensors")


@pytest.mark.parametrize(("args", "message"), [
    (["--max-memory", "lots"], "--max-memory 'lots' is not a memory size"),
    (["--max-memory", "0"], "--max-memory '0' is not a memory size above zero"),
    (["--max-memory", "-2G"], "--max-memory '-2G' is not a memory size"),
    (["--tile", "0"], "'--tile'"),
], ids=["word", "zero", "negative", "tile 0"])
def test_bad_memory_options_are_one_error_line(tmp_path: Path, weights: Path, args: list[str], message: str) -> None:
    clip = make_clip(tmp_path / "in.mp4", n=3, audio=False)
    result = runner.invoke(app, ["interp", str(clip), str(tmp_path / "out.mp4"), "--weights", str(weights), *args])
    assert result.exit_code == 2, result.output
    assert_one_error(result.stderr, result.stdout, message)
    assert not (tmp_path / "out.mp4").exists()


def test_interp_under_a_tiny_budget_tiles_and_keeps_count_and_size(tmp_path: Path, weights: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", w=61, h=37, n=5, audio=False)
    out = tmp_path / "out.mkv"
    result = runner.invoke(app, ["interp", str(clip), str(out), "--weights", str(weights), "--max-memory", "1M"])
    assert result.exit_code == 0, result.output
    assert re.search(r"5 -> 9 frames .*; \d+ model frames in \d+ tiles\)", plain(result.stderr)), result.stderr
    info = probe(out)
    assert (info.n_frames, info.width, info.height) == (9, 61, 37)


def test_interp_pair_with_forced_tiles(tmp_path: Path, weights: Path) -> None:
    tex = texture(37, 61)
    write_image(tmp_path / "a.png", np.ascontiguousarray(tex[:37, :61]))
    write_image(tmp_path / "b.png", np.ascontiguousarray(tex[1:38, 2:63]))
    result = runner.invoke(app, ["interp", str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "m.png"),
                                 "--weights", str(weights), "--tile", "24"])
    assert result.exit_code == 0, result.output
    assert "(in 15 tiles)" in plain(result.stderr)  # 40x64 padded, 24 px tiles sharing 12 px or more: 3 x 5
    assert read_image(tmp_path / "m.png").shape == (37, 61, 3)


# --- CUDA ---------------------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_estimate_covers_a_real_call_and_tiles_stay_under_budget() -> None:
    dev = torch.device("cuda")
    model = build_film("film-s").eval().to(dev, torch.float16)
    coarse = torch.rand(1, 3, 64, 96, device=dev, generator=torch.Generator(device=dev).manual_seed(0))
    x0 = F.interpolate(coarse, size=(1024, 1536), mode="bicubic").clamp(0, 1).half()  # a smooth texture
    x1 = x0.roll(3, dims=-1)  # panning 3 px
    run = Tiler(model, lambda a, b, t: model(a, b), lambda a, b: model(a, b), dev, torch.float16, 32, TileConfig())
    per_pixel = run.pixel_cost()
    with torch.inference_mode():
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        whole = model(x0, x1)
        torch.cuda.synchronize()
        used = torch.cuda.max_memory_allocated() - before
        assert used <= per_pixel * 1024 * 1536 <= 1.5 * used
        budget = int(per_pixel * 1024 * 1536 / 3)
        run = Tiler(model, lambda a, b, t: model(a, b), lambda a, b: model(a, b), dev, torch.float16, 32,
                    TileConfig(max_memory=budget))
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        tiled = run(x0, x1, [0.5])
        torch.cuda.synchronize()
        assert torch.cuda.max_memory_allocated() - before <= budget
    assert (tiled.float() - whole.float()).abs().mean() < 0.01
