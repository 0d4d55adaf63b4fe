"""The scheduler with stub models: counts, timestamps, snapping, cuts, duplicates, batching, padding, streaming.

The scheduler runs on ``--device`` (``pytest --device cuda`` on a GPU: see conftest): ``run`` and the direct calls
pass ``DEVICE``; the stubs compute on whatever device their inputs are on.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from framefill.interpolate import (
    InterpolationStats,
    ScheduleConfig,
    Timeline,
    interpolate_frames,
    interpolate_pair,
    out_fps_for,
    output_count,
    plan_output,
    snap_time,
)
from framefill.models import build_model

STEP = 16  # frame i is filled with STEP * i: a linear blend at t = j/8 stays an integer
DEVICE = torch.device("cpu")  # set from --device for each test (use_device)


@pytest.fixture(autouse=True)
def use_device(device: torch.device) -> None:
    global DEVICE
    DEVICE = device


class Average(torch.nn.Module):
    """t = 0.5 stub: the mean of its inputs, so bisection yields exact linear blends. Records batch sizes."""

    times = (0.5,)

    def __init__(self, divisor: int = 1) -> None:
        super().__init__()
        self.divisor = divisor
        self.batches: list[int] = []
        self.dtypes: list[torch.dtype] = []
        self.channels_last: list[bool] = []

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        assert img0.shape == img1.shape and img0.shape[-1] % self.divisor == 0 and img0.shape[-2] % self.divisor == 0
        self.batches.append(img0.shape[0])
        self.dtypes.append(img0.dtype)
        self.channels_last.append(img0.is_contiguous(memory_format=torch.channels_last))
        return (img0 + img1) / 2


class Lerp(torch.nn.Module):
    """Stub taking a time: ``(1 - t) * img0 + t * img1``. Records the times it is called with."""

    def __init__(self, times: tuple[float, ...] = (), arbitrary: bool = False) -> None:
        super().__init__()
        self.times = times
        self.arbitrary_time = arbitrary
        self.seen: list[float] = []

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (img0.shape[0],)
        self.seen += t.tolist()
        t = t.view(-1, 1, 1, 1)
        return (1 - t) * img0 + t * img1


def ramp(n: int, h: int = 6, w: int = 8, step: int = STEP) -> list[np.ndarray]:
    return [np.full((h, w, 3), step * i, np.uint8) for i in range(n)]


def values(frames: list[np.ndarray]) -> list[float]:
    return [float(f.mean()) for f in frames]


def run(frames, model, in_fps=Fraction(24), stats=None, **cfg) -> list[np.ndarray]:
    return list(interpolate_frames(frames, in_fps, model, ScheduleConfig(**cfg), stats=stats, device=DEVICE))


# ---- timing, no model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_plan_factor_counts_and_timestamps(factor):
    n = 7
    out_fps, plan = plan_output(n, Fraction(24), factor=factor)
    plan = list(plan)
    assert out_fps == 24 * factor
    assert len(plan) == (n - 1) * factor + 1 == output_count(n, Fraction(24), factor=factor)
    assert plan[0] == (0, 0) and plan[-1] == (n - 1, 0)
    for k, (i, t) in enumerate(plan):
        assert Fraction(i) + t == Fraction(k) / out_fps * 24  # position of time k / out_fps, exactly
        assert 0 <= t < 1


@pytest.mark.parametrize("in_fps, fps, n, expected", [
    (Fraction(24), Fraction(60), 10, 23),  # floor(9 * 2.5) + 1; the last input (t = 22.5) is not hit
    (Fraction(30000, 1001), Fraction(60000, 1001), 10, 19),  # exactly factor 2
    (Fraction(25), Fraction(60), 26, 61),  # 25 * 2.4 = 60: ends on the last input
])
def test_plan_fps_counts(in_fps, fps, n, expected):
    out_fps, plan = plan_output(n, in_fps, fps=fps)
    plan = list(plan)
    assert out_fps == fps and len(plan) == expected == output_count(n, in_fps, fps=fps)
    for k, (i, t) in enumerate(plan):
        assert Fraction(i) + t == k * in_fps / fps and 0 <= t < 1
    assert plan[-1][0] + plan[-1][1] <= n - 1


def test_plan_ntsc_matches_factor_2():
    _, by_fps = plan_output(9, Fraction(30000, 1001), fps=Fraction(60000, 1001))
    _, by_factor = plan_output(9, Fraction(30000, 1001), factor=2)
    assert list(by_fps) == list(by_factor)


def test_plan_unknown_length_is_endless():
    out_fps, plan = plan_output(None, 25, fps=60)
    first = [next(plan) for _ in range(13)]
    assert out_fps == 60 and first[5] == (2, Fraction(1, 12)) and first[6] == (2, Fraction(1, 2))
    assert first[12] == (5, 0)


def test_rate_errors():
    with pytest.raises(ValueError, match="above the input fps"):
        output_count(10, 30, fps=24)
    with pytest.raises(ValueError, match="above the input fps"):
        out_fps_for(30, ScheduleConfig(fps=Fraction(30)))
    with pytest.raises(ValueError, match="factor"):
        ScheduleConfig(factor=1)
    with pytest.raises(ValueError, match="exactly one"):
        ScheduleConfig(factor=2, fps=Fraction(60))
    with pytest.raises(ValueError, match="at least 2"):
        output_count(1, 24, factor=2)
    assert out_fps_for(Fraction(30000, 1001), ScheduleConfig(fps="60000/1001")) == Fraction(60000, 1001)


def test_snap_time():
    assert snap_time(Fraction(1, 3), 3) == (Fraction(3, 8), Fraction(1, 24))
    assert snap_time(Fraction(3, 8), 3) == (Fraction(3, 8), 0)
    assert snap_time(Fraction(1, 16), 3)[0] == Fraction(1, 8)  # ties go towards the middle ...
    assert snap_time(Fraction(15, 16), 3)[0] == Fraction(7, 8)  # ... symmetrically
    for depth in (1, 2, 3, 5):
        for k in range(201):
            t = Fraction(k, 200)
            snapped, err = snap_time(t, depth)
            assert err == abs(snapped - t) <= Fraction(1, 2 ** (depth + 1))
            assert (snapped * 2**depth).denominator == 1
            assert snap_time(1 - t, depth)[0] == 1 - snapped
    with pytest.raises(ValueError):
        snap_time(1.5, 3)


# ---- the scheduler with stubs ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 3, 4, 16])
def test_factor_values_and_endpoints(factor):
    frames = ramp(5)
    stats = InterpolationStats()
    out = run(frames, Average(), factor=factor, stats=stats)
    assert len(out) == 4 * factor + 1 == stats.frames_out
    assert out[0] is frames[0] and out[-1] is frames[-1]
    for k, frame in enumerate(out):
        i, t = divmod(Fraction(k, factor), 1)
        snapped = snap_time(t, 4 if factor == 16 else 3)[0]  # factor 16 raises the depth to 4
        assert frame.shape == (6, 8, 3) and frame.dtype == np.uint8
        assert float(frame.mean()) == STEP * (i + snapped)
    if factor == 3:
        assert stats.max_timing_error == pytest.approx(1 / 24)
    else:
        assert stats.max_timing_error == 0
    assert stats.pairs_interpolated == 4 and stats.scene_cuts == stats.pairs_duplicate == 0


def test_fps_target_values():
    frames = ramp(11)
    out = run(frames, Average(), in_fps=Fraction(25), fps=Fraction(60))
    assert len(out) == output_count(11, 25, fps=60) == 25
    _, plan = plan_output(11, 25, fps=60)
    for frame, (i, t) in zip(out, plan, strict=True):
        assert float(frame.mean()) == STEP * (i + snap_time(t, 3)[0])
    assert out[-1] is frames[-1]


def test_scene_cut_copies_nearer_frame():
    frames = [np.full((6, 8, 3), v, np.uint8) for v in (0, 16, 200, 216)]
    stats = InterpolationStats()
    model = Average()
    out = run(frames, model, factor=4, stats=stats)
    assert values(out) == [0, 4, 8, 12, 16, 16, 200, 200, 200, 204, 208, 212, 216]
    assert out[5] is frames[1] and out[6] is frames[2]  # copies, no blend across the cut
    assert stats.scene_cuts == 1 and stats.pairs_interpolated == 2
    blended = run(frames, Average(), factor=2, detect_scenes=False)
    assert values(blended)[3] == 108


def test_pan_is_not_a_cut():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (32, 160, 3), dtype=np.uint8)
    frames = [np.ascontiguousarray(texture[:, 20 * i:20 * i + 96]) for i in range(3)]  # big motion, same histogram
    stats = InterpolationStats()
    run(frames, Average(), factor=2, stats=stats)
    assert stats.scene_cuts == 0 and stats.pairs_interpolated == 2


def test_duplicates_skip_the_model():
    frames = [np.full((6, 8, 3), v, np.uint8) for v in (0, 0, 0, 16)]
    stats = InterpolationStats()
    model = Average()
    out = run(frames, model, factor=2, stats=stats)
    assert values(out) == [0, 0, 0, 0, 0, 8, 16]
    assert stats.pairs_duplicate == 2 and stats.pairs_interpolated == 1
    assert stats.model_calls == len(model.batches) == 1 and stats.model_frames == 1
    model = Average()
    run(frames, model, factor=2, skip_duplicates=False)
    assert sum(model.batches) == 3


def test_codec_noise_is_a_duplicate_but_a_small_moving_square_is_not():
    rng = np.random.default_rng(0)
    base = rng.integers(20, 230, (48, 64, 3), dtype=np.uint8)
    noise = rng.integers(-4, 5, base.shape) * (rng.random(base.shape[:2]) < 0.1)[..., None]
    noisy = (base + noise).astype(np.uint8)  # codec-like: a few levels on a tenth of the pixels
    moved = base.copy()
    moved[10:16, 20:26] = 255  # a 6x6 square appears
    stats = InterpolationStats()
    run([base, noisy, moved], Average(), factor=2, stats=stats)
    assert stats.pairs_duplicate == 1 and stats.pairs_interpolated == 1 and stats.scene_cuts == 0


def test_batching_across_pairs_and_depths():
    model = Average()
    stats = InterpolationStats()
    run(ramp(9), model, factor=4, batch_size=4, stats=stats)
    # two windows of 4 pairs; per window depth 1 has 4 nodes (1 call), depth 2 has 8 (2 calls)
    assert model.batches == [4, 4, 4, 4, 4, 4] and stats.model_calls == 6 and stats.model_frames == 24
    model = Average()
    run(ramp(9), model, factor=4, batch_size=1)
    assert model.batches == [1] * 24


def test_channels_last_float32_frames_in_every_precision():
    # The precision is the model's (its convolutions); frames reach it as float32, so nothing is lost on the way.
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        model = Average()
        out = list(interpolate_frames(ramp(3), 24, model, ScheduleConfig(factor=4), dtype=dtype, device=DEVICE))
        assert set(model.dtypes) == {torch.float32}
        assert model.channels_last == [DEVICE.type == "cpu"] * len(model.batches)  # the CPU convolutions' layout
        assert values(out) == [STEP * k / 4 for k in range(9)]


def test_odd_size_is_padded_and_cropped():
    frames = [f[:, ::-1] for f in ramp(3, h=23, w=37)]  # flipped views: negative strides
    out = run(frames, Average(divisor=8), factor=2)
    assert [f.shape for f in out] == [(23, 37, 3)] * 5
    assert values(out) == [0, 8, 16, 24, 32]


def test_real_film_tiny_on_odd_size():
    from framefill.models.film import build_film

    torch.manual_seed(0)
    model = build_film("film-tiny").eval().to(DEVICE)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (23, 37, 3), dtype=np.uint8) for _ in range(2)]
    out = run(frames, model, factor=2, detect_scenes=False)
    assert len(out) == 3 and out[1].shape == (23, 37, 3) and out[1].dtype == np.uint8
    assert out[0] is frames[0] and out[2] is frames[1]


def test_arbitrary_time_gets_exact_t():
    model = Lerp(arbitrary=True)
    stats = InterpolationStats()
    out = run(ramp(3), model, factor=3, stats=stats)
    assert model.seen == pytest.approx([1 / 3, 2 / 3] * 2)
    assert stats.max_timing_error == 0 and stats.model_calls == 1  # all four nodes in one batch
    assert np.allclose(values(out), [STEP * k / 3 for k in range(7)], atol=0.5)


def test_deep_frames_come_back_deep():
    frames = [np.full((6, 8, 3), v, np.uint16) for v in (1000, 1004, 60000)]  # a step of 4 16-bit levels: < 1 in 8
    out = run(frames, Average(), factor=2, detect_scenes=False, skip_duplicates=False)  # (4 levels: a duplicate)
    assert [f.dtype for f in out] == [np.uint16] * 5
    assert values(out) == pytest.approx([1000, 1002, 1004, 30502, 60000], abs=1)
    assert interpolate_pair(frames[0], frames[1], Average(), device=DEVICE).dtype == np.uint16
    with pytest.raises(ValueError, match="frame 1 is uint8 but the first frame was uint16"):
        run([frames[0], frames[1].astype(np.uint8)], Average(), factor=2)
    with pytest.raises(ValueError, match="uint8 RGB array"):  # four-frame models take 8-bit frames only
        list(interpolate_frames(frames, 24, build_model("convlstm", "convlstm-tiny").eval(),
                                ScheduleConfig(factor=2)))


VFR_TIMES = [Fraction(0), Fraction(1, 30), Fraction(2, 30), Fraction(5, 30), Fraction(8, 30)]  # 30 fps, then 10


def test_frame_times_put_each_output_at_its_own_moment():
    frames = [np.full((6, 8, 3), int(600 * t), np.uint8) for t in VFR_TIMES]  # brightness 600 per second
    in_fps = 4 / VFR_TIMES[-1]  # the average rate: 15 fps
    model = Lerp(arbitrary=True)
    out = list(interpolate_frames(frames, in_fps, model, ScheduleConfig(factor=2, detect_scenes=False),
                                  times=VFR_TIMES, device=DEVICE))
    assert values(out) == pytest.approx([20 * k for k in range(9)], abs=0.5)  # output k at k/30 s: 600 k / 30
    assert model.seen == pytest.approx([1 / 3, 2 / 3] * 2)  # only the 10 fps pairs need the model
    assert out[0] is frames[0] and out[2] is frames[2] and out[5] is frames[3] and out[8] is frames[4]
    evenly = run(frames, Lerp(arbitrary=True), in_fps=in_fps, factor=2, detect_scenes=False)
    assert values(evenly) != pytest.approx(values(out), abs=0.5)  # taken as evenly spaced, they land elsewhere


def test_frame_times_deepen_bisection_for_wide_gaps_and_are_checked():
    stats = InterpolationStats()
    times = [Fraction(0), Fraction(1, 30), Fraction(2, 3)]  # a 19-output gap at 30 fps out: a 1/32 grid
    frames = [np.full((6, 8, 3), v, np.uint8) for v in (0, 10, 200)]
    config = ScheduleConfig(factor=2, detect_scenes=False)  # 15 fps in: 30 out
    out = list(interpolate_frames(frames, Fraction(15), Average(), config, times=times, stats=stats))
    assert len(out) == Timeline(2, times, Fraction(30)).count(3) == 21
    assert stats.max_timing_error <= 1 / 64
    with pytest.raises(ValueError, match="increase"):
        Timeline(Fraction(2), [Fraction(0), Fraction(1, 30), Fraction(1, 30)], Fraction(30))
    paused = [Fraction(0), Fraction(1, 30), Fraction(120)]  # a screen recording that stops for two minutes
    out = list(interpolate_frames(frames, Fraction(15), Average(), config, times=paused))  # no error
    assert len(out) == Timeline(2, paused, Fraction(30)).count(3) == 3601


def test_listed_times_are_called_directly():
    model = Lerp(times=(0.25, 0.5, 0.75))
    stats = InterpolationStats()
    out = run(ramp(2), model, factor=8, batch_size=8, stats=stats)
    assert values(out) == [STEP * k / 8 for k in range(9)]
    # 1/4, 1/2, 3/4 straight from the pair; the odd eighths bisect them (local t = 0.5)
    assert model.seen == [0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5] and stats.model_calls == 2


def test_streaming_reads_a_bounded_window():
    pulled = 0

    def source(n):
        nonlocal pulled
        for frame in ramp(n, step=1):
            pulled += 1
            yield frame

    lookahead = 0  # frames read beyond the pair of the output just produced
    config = ScheduleConfig(factor=2, batch_size=2)
    for k, _frame in enumerate(interpolate_frames(source(60), 24, Average(), config)):
        lookahead = max(lookahead, pulled - k // 2)
    assert pulled == 60 and lookahead <= config.batch_size + 1  # one window: batch_size pairs


def test_progress_callback():
    seen = []
    stats = InterpolationStats()
    out = list(interpolate_frames(ramp(6), 24, Average(), ScheduleConfig(fps=60), on_progress=seen.append,
                                  stats=stats))
    assert seen == list(range(1, len(out) + 1)) and len(out) == output_count(6, 24, fps=60) == stats.frames_out
    assert stats.frames_in == 6


def test_input_errors():
    with pytest.raises(ValueError, match="at least 2 frames"):
        run(ramp(1), Average(), factor=2)
    with pytest.raises(ValueError, match="at least 2 frames"):
        run([], Average(), factor=2)
    with pytest.raises(ValueError, match="share one size"):
        run(ramp(2) + ramp(1, h=4), Average(), factor=2)
    with pytest.raises(ValueError, match="uint8"):
        run([np.zeros((4, 4, 3), np.float32)] * 2, Average(), factor=2)
    with pytest.raises(ValueError, match="above the input fps"):
        interpolate_frames(ramp(2), 30, Average(), ScheduleConfig(fps=24))  # raises at the call, not later


def test_interpolate_pair():
    a, b = ramp(2)
    assert float(interpolate_pair(a, b, Average(), device=DEVICE).mean()) == 8
    assert float(interpolate_pair(a, b, Average(), Fraction(1, 4), device=DEVICE).mean()) == 4
    assert float(interpolate_pair(a, b, Average(), 0.3, device=DEVICE).mean()) == 4  # 0.3 snaps to 1/4
    assert np.array_equal(interpolate_pair(a, b, Average(), 0, device=DEVICE), a)
    lerp = interpolate_pair(a, b, Lerp(arbitrary=True), 0.3, device=DEVICE)
    assert float(lerp.mean()) == pytest.approx(STEP * 0.3, abs=0.5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_film_tiny_on_cuda_half():
    from framefill.models.film import build_film

    model = build_film("film-tiny").eval().to("cuda", torch.float16)
    frames = ramp(3, h=23, w=37)
    out = list(interpolate_frames(frames, 24, model, ScheduleConfig(factor=2), device=torch.device("cuda"),
                                  dtype=torch.float16))
    assert len(out) == 5 and all(f.shape == (23, 37, 3) and f.dtype == np.uint8 for f in out)
    assert out[0] is frames[0] and out[-1] is frames[-1]
