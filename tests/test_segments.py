"""Segments of a job (framefill.segments): planning, and that segments made apart are the single run's frames."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from framefill.interpolate import InterpolationStats, ScheduleConfig, Timeline, interpolate_frames, out_fps_for
from framefill.models import build_model
from framefill.segments import Feed, context_for, pair_of, plan, segment_frames, split

pytestmark = pytest.mark.usefixtures("one_thread")


def clip(n: int, seed: int = 0, cut_at: int | None = None, repeat_at: int | None = None) -> list[np.ndarray]:
    """``n`` 24x32 frames of a textured square moving 3 px a frame, a scene cut before ``cut_at`` and frame
    ``repeat_at`` a copy of the one before it."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (24, 64, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = texture[:, (3 * i) % 32:(3 * i) % 32 + 32].copy()
        if cut_at is not None and i >= cut_at:
            frame = frame[::-1] // 4  # darker and upside down: another shot
        frames.append(frame)
    if repeat_at is not None:
        frames[repeat_at] = frames[repeat_at - 1].copy()
    return frames


def by_segments(frames, in_fps, model, config, *, count, times=None) -> list[np.ndarray]:
    """The job run as ``count`` segments through one Feed, as a resumed job makes them."""
    ratio = out_fps_for(in_fps, config) / Fraction(in_fps)
    timeline = Timeline(ratio, times, out_fps_for(in_fps, config) if times else None)
    n = len(frames)
    segments = plan(timeline, n, split(timeline.count(n), count=count), context_for(model))
    feed = Feed(iter(frames))
    out: list[np.ndarray] = []
    for seg in segments:
        made = list(segment_frames(feed.take(seg.first, seg.last), seg, timeline, in_fps, model, config,
                                   device="cpu", dtype=torch.float32))
        assert len(made) == len(seg.outputs)
        out += made
    return out


def test_split_and_plan():
    assert split(10, count=3) == [range(0, 3), range(3, 6), range(6, 10)]
    assert split(10, length=4) == [range(0, 4), range(4, 8), range(8, 10)]
    with pytest.raises(ValueError, match="1 to 10 segments"):
        split(10, count=11)
    timeline = Timeline(Fraction(12, 5))  # 25 -> 60 fps
    assert [pair_of(timeline, 6, k) for k in (0, 2, 3, 4, 5, 12)] == [0, 0, 1, 1, 2, 5]
    (seg,) = plan(timeline, 6, [range(3, 5)])
    assert (seg.first, seg.last) == (1, 2)  # outputs 3 and 4 lie in the pair (1, 2), which spans 2.4 to 4.8
    (seg,) = plan(timeline, 6, [range(3, 5)], context=2)
    assert (seg.first, seg.last) == (0, 4)


@pytest.fixture(scope="module")
def film() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("film", "film-tiny").eval()


@pytest.mark.parametrize(("in_fps", "cfg", "count"), [
    (Fraction(24), {"factor": 2}, 3),
    (Fraction(25), {"fps": Fraction(60)}, 4),  # 12/5: segment edges inside pairs
    (Fraction(30000, 1001), {"fps": Fraction(50)}, 5),  # a ratio of 5005/3000
    (Fraction(24), {"factor": 3, "batch_size": 3}, 7),
], ids=["factor 2", "25 to 60", "ntsc to 50", "factor 3"])
def test_film_segments_are_the_single_run(film, in_fps, cfg, count):
    frames = clip(14, cut_at=6, repeat_at=10)
    config = ScheduleConfig(**cfg)
    stats = InterpolationStats()
    single = list(interpolate_frames(frames, in_fps, film, config, stats=stats))
    assert stats.scene_cuts == 1 and stats.pairs_duplicate == 1  # the edges must judge these as the single run
    joined = by_segments(frames, in_fps, film, config, count=count)
    assert len(joined) == len(single)
    for k, (a, b) in enumerate(zip(joined, single, strict=True)):
        assert np.array_equal(a, b), f"output {k} differs"


def test_variable_frame_rate_segments_are_the_single_run(film):
    gaps = [1, 1, 3, 1, 1, 1, 5, 1, 2, 1, 1]  # in 30ths of a second
    times = [Fraction(sum(gaps[:i]), 30) for i in range(len(gaps) + 1)]
    frames = clip(len(times))
    in_fps = Fraction(len(times) - 1) / times[-1]
    config = ScheduleConfig(factor=2)
    single = list(interpolate_frames(frames, in_fps, film, config, times=times))
    joined = by_segments(frames, in_fps, film, config, count=4, times=times)
    assert len(joined) == len(single)
    assert all(np.array_equal(a, b) for a, b in zip(joined, single, strict=True))


@pytest.mark.parametrize(("cfg", "count"), [({"factor": 4}, 4), ({"fps": Fraction(60)}, 3)], ids=["x4", "24 to 60"])
def test_four_frame_segments_are_the_single_run(cfg, count):
    torch.manual_seed(0)
    model = build_model("convlstm", "convlstm-tiny").eval()
    frames = clip(12, cut_at=7)
    config = ScheduleConfig(**cfg)
    single = list(interpolate_frames(frames, Fraction(24), model, config))
    joined = by_segments(frames, Fraction(24), model, config, count=count)
    assert len(joined) == len(single)
    assert all(np.array_equal(a, b) for a, b in zip(joined, single, strict=True))


def test_feed_keeps_only_the_shared_frames():
    frames = clip(20)
    feed = Feed(iter(frames), keep=3)
    assert [f is frames[i] for i, f in zip(range(2, 6), feed.take(2, 5), strict=True)] == [True] * 4
    assert len(list(feed.take(4, 9))) == 6
    with pytest.raises(ValueError, match="already dropped"):
        list(feed.take(5, 12))
    with pytest.raises(ValueError, match="input ended"):
        list(feed.take(9, 25))


def test_memory_stays_flat_over_a_long_stream(tmp_path):
    """tools/stream_memory.py on a 4-minute clip (7,200 frames in, 14,399 out) through interp's path: the peak
    resident memory over the last tenth is within 8 MiB of the first tenth's (the README has the two-hour figure)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("stream_memory", Path(__file__).parent.parent / "tools" /
                                                  "stream_memory.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    result = tool.measure(seconds=240, size="32x18", fps=30, folder=tmp_path)
    assert result["frames_out"] == 2 * 7200 - 1
    assert result["peak_mib_last_tenth"] <= result["peak_mib_first_tenth"] + 8, result
