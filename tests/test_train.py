"""Training: clip discovery and triplet skips, sampling, losses, the loop (learning, schedule, exact resume,
export), and the safetensors reader/writer.

CPU only and tiny (the ``film-tiny`` preset, 64x48 clips, 32-px crops): the whole file runs in seconds.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square, untagged_hd_clip, write_clip
from typer.testing import CliRunner

from framefill.checkpoint import WeightsError, load_safetensors, read_metadata, save_safetensors
from framefill.cli import app
from framefill.frames import read_image, write_image
from framefill.interpolate import InterpolationStats, ScheduleConfig, interpolate_frames
from framefill.models import load_model
from framefill.models.layers import crop, image_pyramid, pad_to_multiple
from framefill.train.data import DataConfig, TripletDataset, find_clips, load_clip, valid_triplets
from framefill.train.loop import AUTOCAST, TrainConfig, Trainer, lr_at, warp_loss
from framefill.train.losses import census, charbonnier, laplacian_l1, psnr

N = 12  # frames per test clip: the square moves 2 px a frame and never wraps (it would at frame 27)
NO_AUG = {"flip_prob": 0.0, "rot90_prob": 0.0, "reverse_prob": 0.0, "jitter": 0.0}


# Two cores shared with other work; one thread also keeps CPU results bit-for-bit repeatable.
pytestmark = pytest.mark.usefixtures("one_thread")


def square_frames(n: int = N) -> np.ndarray:
    return np.stack(list(moving_square(n=n)))  # (n, 48, 64, 3) uint8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one clip: a moving square as a folder of PNG frames (lossless)."""
    root = tmp_path_factory.mktemp("data")
    write_clip(root / "square", list(square_frames()))
    return root


# --- data: clips and triplet skips --------------------------------------------------------------------------


def test_find_clips_finds_videos_and_frame_folders(tmp_path: Path):
    write_clip(tmp_path / "a.mp4", list(square_frames(4)))
    (tmp_path / "nested").mkdir()
    write_clip(tmp_path / "nested" / "b.mkv", list(square_frames(4)))
    write_clip(tmp_path / "nested" / "frames", list(square_frames(3)))  # 3 images: a clip
    write_clip(tmp_path / "pair", list(square_frames(2)))  # 2 images: too few
    (tmp_path / "notes.txt").write_text("not a clip")
    (tmp_path / "phone.3gp").write_bytes(b"")  # taken by its name, as framefill eval takes it (read later)
    clips = find_clips(tmp_path)
    assert clips == [tmp_path / "a.mp4", tmp_path / "nested" / "b.mkv", tmp_path / "phone.3gp",
                     tmp_path / "nested" / "frames"]  # video files, then frame folders
    assert find_clips(tmp_path / "a.mp4") == [tmp_path / "a.mp4"]
    assert find_clips(tmp_path / "nested" / "frames") == [tmp_path / "nested" / "frames"]


def test_load_clip_reads_frames_in_natural_order_and_caches(tmp_path: Path):
    frames = square_frames()
    (tmp_path / "clip").mkdir()
    for i, frame in enumerate(frames, start=1):  # f1.png ... f12.png: f10 sorts before f2 as text
        write_image(tmp_path / "clip" / f"f{i}.png", frame)
    cfg = DataConfig(max_frames=N)
    assert np.array_equal(load_clip(tmp_path / "clip", cfg, None), frames)
    assert np.array_equal(load_clip(tmp_path / "clip", DataConfig(max_frames=5), None), frames[:5])
    first = load_clip(tmp_path / "clip", cfg, tmp_path / "cache")
    assert np.array_equal(first, frames)
    assert isinstance(first, np.memmap)  # the decoding run pages its clips from the cache too, not from its memory
    (cached,) = (tmp_path / "cache").iterdir()  # one .npy, no partial file left behind
    assert cached.suffix == ".npy"
    for f in (tmp_path / "clip").iterdir():
        f.unlink()
    assert np.array_equal(load_clip(tmp_path / "clip", cfg, tmp_path / "cache"), frames)  # from the cache


def test_load_clip_decodes_video_as_interp_does(tmp_path: Path):
    src = untagged_hd_clip(tmp_path / "untagged_hd.mp4")  # RGB (32, 192, 64), BT.709 YUV without tags
    frames = load_clip(src, DataConfig(max_frames=2, max_side=1280), None)
    assert frames.shape == (2, 720, 1280, 3)
    assert np.abs(frames.astype(int) - (32, 192, 64)).max() <= 2  # the colours interp sees (BT.601: 45, 216, 68)


@pytest.mark.parametrize("stride", [1, 2])
def test_valid_triplets_of_smooth_motion_are_all_starts(stride):
    assert valid_triplets(square_frames(), stride, DataConfig()).tolist() == list(range(N - 2 * stride))


@pytest.mark.parametrize("stride", [1, 2])
def test_valid_triplets_skip_a_duplicated_frame(stride):
    k = 5
    sq = square_frames(N - 1)
    frames = np.concatenate([sq[: k + 1], sq[k : k + 1], sq[k + 1 :]])  # frames k and k + 1 are one image
    assert len(frames) == N and np.array_equal(frames[k], frames[k + 1])
    skipped = set(range(k - 2 * stride + 1, k + 1))  # triplets (i, i + s, i + 2s) holding the pair (k, k + 1)
    expected = [i for i in range(N - 2 * stride) if i not in skipped]
    assert valid_triplets(frames, stride, DataConfig()).tolist() == expected


@pytest.mark.parametrize("stride", [1, 2])
def test_valid_triplets_skip_a_scene_cut(stride):
    k = 6  # the cut lies between frames k - 1 and k
    sq = square_frames()
    other = sq[:, ::-1, ::-1, ::-1]  # the same motion over a completely different image
    frames = np.concatenate([sq[:k], other[k:]])
    skipped = set(range(k - 2 * stride, k))  # triplets holding the pair (k - 1, k)
    expected = [i for i in range(N - 2 * stride) if i not in skipped]
    assert valid_triplets(frames, stride, DataConfig()).tolist() == expected


def test_valid_triplets_of_a_static_clip_are_none():
    frames = np.repeat(square_frames(1), N, axis=0)
    for stride in (1, 2, 3):
        assert len(valid_triplets(frames, stride, DataConfig())) == 0


def test_valid_triplets_of_a_too_short_clip_are_none():
    assert len(valid_triplets(square_frames(4), 2, DataConfig())) == 0


# --- data: sampling ------------------------------------------------------------------------------------------


def test_a_folder_of_too_short_clips_says_how_many_frames_a_sample_needs(tmp_path: Path):
    write_clip(tmp_path / "two.mp4", list(square_frames(2)))
    with pytest.raises(ValueError, match=r"no usable triplets under .*: its clips are smaller than the crop \(32 px\), "
                                         r"shorter than 3 frames, or static"):
        TripletDataset(tmp_path, DataConfig(crop=32, max_frames=N, strides=(1, 2)), tmp_path / "cache")
    with pytest.raises(ValueError, match="no usable windows .* shorter than 13 frames"):
        TripletDataset(tmp_path, DataConfig(crop=32, max_frames=N, strides=(2, 3)), tmp_path / "cache", context=4)


def test_sample_shape_and_range_from_a_video_file(tmp_path: Path):
    write_clip(tmp_path / "clip.mp4", list(square_frames()))
    ds = TripletDataset(tmp_path, DataConfig(crop=32, max_frames=N), tmp_path / "cache")
    assert ds.summary()["clips"] == 1 and len(ds) > 0
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = ds.sample(rng)
        assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("stride", [1, 2])
def test_sample_middle_is_the_frame_halfway(data_dir: Path, stride):
    c = 32
    frames = square_frames()
    ds = TripletDataset(data_dir, DataConfig(crop=c, strides=(stride,), max_frames=N, **NO_AUG))
    rng = np.random.default_rng(stride)
    h, w = frames.shape[1:3]
    for _ in range(6):
        trip = (ds.sample(rng) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (3, c, c, 3)
        in0, in1, mid = trip
        found = 0
        for i in range(N - 2 * stride):  # where did this triplet come from? (the gradient makes y, x unique)
            for y in range(h - c + 1):
                for x in range(w - c + 1):
                    at = frames[:, y : y + c, x : x + c]
                    if np.array_equal(at[i], in0) and np.array_equal(at[i + 2 * stride], in1):
                        assert np.array_equal(at[i + stride], mid), (i, y, x)
                        found += 1
        assert found >= 1


@pytest.mark.parametrize("reverse", [0.0, 1.0])
def test_arbitrary_time_samples_frame_i_plus_j_at_t_j_over_2s(data_dir: Path, reverse: float):
    c, stride = 32, 3
    frames = square_frames()
    aug = NO_AUG | {"reverse_prob": reverse}
    cfg = DataConfig(crop=c, strides=(stride,), max_frames=N, arbitrary_time=True, **aug)
    ds = TripletDataset(data_dir, cfg)
    rng = np.random.default_rng(0)
    h, w = frames.shape[1:3]
    seen = set()
    for _ in range(12):
        x, t = ds.sample_timed(rng)
        in0, in1, truth = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (c, c, 3) each
        assert round(t * 2 * stride, 9) in range(1, 2 * stride)  # t = j / 2s, never an input
        seen.add(t)
        found = 0
        for a in range(N):  # where did this sample come from? (the gradient makes y, x unique)
            b = a - 2 * stride if reverse else a + 2 * stride  # reversed: input 0 is the later frame
            if not 0 <= b < N:
                continue
            for y in range(h - c + 1):
                for x0 in range(w - c + 1):
                    at = frames[:, y : y + c, x0 : x0 + c]
                    if np.array_equal(at[a], in0) and np.array_equal(at[b], in1):
                        assert np.array_equal(at[a + round(t * (b - a))], truth), (a, y, x0, t)
                        found += 1
        assert found >= 1
    assert len(seen) >= 3  # several of the five sixths in twelve draws


def test_arbitrary_time_is_for_triplets_only(data_dir: Path):
    with pytest.raises(ValueError, match="four-frame windows are trained at t = 0.5"):
        TripletDataset(data_dir, DataConfig(crop=32, max_frames=N, arbitrary_time=True), context=4)


# --- losses --------------------------------------------------------------------------------------------------


def test_charbonnier_of_equal_images_is_eps():
    x = torch.rand(2, 3, 16, 16)
    assert charbonnier(x, x).item() == pytest.approx(1e-3, rel=1e-4)
    assert charbonnier(x, x, eps=1e-2).item() == pytest.approx(1e-2, rel=1e-4)
    assert charbonnier(x, x + 0.5).item() == pytest.approx(math.sqrt(0.25 + 1e-6), rel=1e-4)


def test_census_is_zero_for_equal_images_and_robust_to_brightness():
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(1, 3, 32, 32, generator=g)  # room for the offset without clipping
    assert census(x, x).item() < 1e-4
    brighter = x + 0.15  # a brightness change: the same structure
    other = 0.2 + 0.6 * torch.rand(1, 3, 32, 32, generator=g)  # different structure, same statistics
    l1_ratio = (brighter - x).abs().mean() / (other - x).abs().mean()
    census_ratio = census(brighter, x) / census(other, x)
    assert l1_ratio > 0.5  # L1 sees a brightness change as half as bad as a different image, or worse ...
    assert census_ratio < 0.01  # ... census hardly sees it
    darker = x * 0.5 + 0.1  # a contrast change too: still far smaller than the structural difference
    assert census(darker, x) < 0.2 * census(other, x)


def test_laplacian_l1_is_zero_for_equal_images_and_sees_blur():
    x = torch.rand(1, 3, 32, 32)
    assert laplacian_l1(x, x).item() == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert laplacian_l1(blurred, x).item() > 0.01


def test_psnr_matches_a_hand_computation():
    target = torch.zeros(2, 3, 8, 8)
    pred = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])  # MSE 1e-2 and 1e-4
    assert psnr(pred, target).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    assert psnr(target, target).tolist() == pytest.approx([100.0, 100.0])  # MSE clamped at 1e-10


# --- the loop ------------------------------------------------------------------------------------------------


def tiny_config(**kw) -> TrainConfig:
    base = {
        "model": "film",
        "preset": "film-tiny",
        "steps": 30,
        "batch": 2,
        "lr": 3e-3,
        "warmup": 3,
        "ema": 0.9,
        "ckpt_every": 1000,
        "data": DataConfig(crop=32, max_frames=N),
    }
    return TrainConfig(**(base | kw))


def test_training_steps_lower_the_loss_on_a_fixed_batch(data_dir: Path, tmp_path: Path):
    trainer = Trainer(tiny_config(), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])  # (2, 3, 3, 32, 32)
    totals = [trainer.train_step(batch)["total"] for _ in range(30)]
    assert all(math.isfinite(t) for t in totals)
    assert np.mean(totals[-5:]) < 0.995 * np.mean(totals[:5]), totals
    assert trainer.step == 30
    assert json.loads((tmp_path / "run" / "config.json").read_text())["preset"] == "film-tiny"



def test_fusion_cues_with_frozen_flow_train_the_fusion_alone(data_dir: Path, tmp_path: Path):
    cfg = tiny_config(fusion_cues=True, freeze_flow=True)
    trainer = Trainer(cfg, data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert trainer.model.config.fusion_cues
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])
    totals = [trainer.train_step(batch)["total"] for _ in range(30)]
    assert np.mean(totals[-5:]) < 0.995 * np.mean(totals[:5]), totals
    after = trainer.model.state_dict()
    frozen = [k for k in after if k.startswith(("extractor.", "flow."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not any(torch.equal(before[k], after[k]) for k in after if k.startswith("fusion.head."))
    assert "warp" not in trainer.train_step(batch)  # the warp loss trains only the flow: skipped


def test_fusion_cues_refused_for_convlstm(data_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="for film"):
        Trainer(tiny_config(model="convlstm", preset="convlstm-tiny", fusion_cues=True), data_dir, tmp_path / "run",
                cache_dir=tmp_path / "cache")

def test_selector_trains_alone_and_lowers_the_loss(data_dir: Path, tmp_path: Path):
    trainer = Trainer(tiny_config(selector=4), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert trainer.model.config.selector_filters == 4
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])
    totals = [trainer.train_step(batch)["total"] for _ in range(30)]
    assert np.mean(totals[-5:]) < 0.995 * np.mean(totals[:5]), totals
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("selector."))
    assert not torch.equal(before["selector.head.weight"], after["selector.head.weight"])
    assert "warp" not in trainer.train_step(batch)  # the flows are fixed: no warp loss


def test_refiner_trains_alone_toward_the_privileged_motion(data_dir: Path, tmp_path: Path):
    """``--refiner``: only the refiner's weights move, the loss is the frame's terms and the end-point term, and it
    falls on a fixed batch."""
    trainer = Trainer(tiny_config(refiner=4, lr=1e-2), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert trainer.model.config.refiner_filters == 4
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])
    recs = [trainer.train_step(batch) for _ in range(30)]
    assert set(recs[0]) >= {"l1", "epe", "total"} and "warp" not in recs[0]
    totals = [r["total"] for r in recs]
    assert np.mean(totals[-5:]) < 0.95 * np.mean(totals[:5]), totals
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("refiner."))
    assert not torch.equal(before["refiner.head.weight"], after["refiner.head.weight"])


def test_refiner_and_selector_train_in_separate_runs(data_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="separate runs"):
        Trainer(tiny_config(refiner=4, selector=4), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="for film"):
        Trainer(tiny_config(model="convlstm", preset="convlstm-tiny", refiner=4), data_dir, tmp_path / "run2",
                cache_dir=tmp_path / "cache")


def test_a_widened_selector_learns_to_choose_the_inputs(data_dir: Path, tmp_path: Path):
    """With ``--unwarped`` the choice's target covers five candidates, and training moves the new choices' weights."""
    trainer = Trainer(tiny_config(selector=4, selector_unwarped=True, w_choice=0.05), data_dir, tmp_path / "run",
                      cache_dir=tmp_path / "cache")
    assert trainer.model.selector.choices == 5
    before = trainer.model.selector.head.weight.detach()[3:].clone()
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])
    recs = [trainer.train_step(batch) for _ in range(10)]
    assert recs[-1]["choice"] < recs[0]["choice"], [r["choice"] for r in recs]
    assert not torch.equal(before, trainer.model.selector.head.weight.detach()[3:])


def test_choice_term_is_logged_only_with_a_selector(data_dir: Path, tmp_path: Path):
    trainer = Trainer(tiny_config(selector=4, w_choice=0.05), data_dir, tmp_path / "run",
                      cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    batch = torch.stack([trainer.dataset.sample(rng) for _ in range(2)])
    rec = trainer.train_step(batch)
    assert rec["choice"] > 0 and rec["total"] > rec["choice"]
    plain = Trainer(tiny_config(w_choice=0.05), data_dir, tmp_path / "run2", cache_dir=tmp_path / "cache")
    assert "choice" not in plain.train_step(batch)


def test_selector_refused_for_convlstm(data_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="for film"):
        Trainer(tiny_config(model="convlstm", preset="convlstm-tiny", selector=4), data_dir, tmp_path / "run",
                cache_dir=tmp_path / "cache")


def test_warp_loss_uses_each_inputs_share_of_the_flow():
    """Two frames of a smooth pattern 4 px apart and the exact flows: warped by t and 1 - t of them, both inputs
    land on the frame at t (loss near zero); by half of them, on the middle frame instead."""
    h, w, levels = 32, 48, 3
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")

    def waves(dx: float) -> torch.Tensor:
        return torch.stack([0.5 + 0.4 * torch.sin((x - dx) / 4 + y / 5)] * 3)[None]  # (1, 3, h, w)

    pyramid = image_pyramid(torch.cat([waves(0), waves(4)]), levels)
    flows = [torch.tensor([[-4.0, 0.0], [4.0, 0.0]]).view(2, 2, 1, 1).expand(2, 2, p.shape[2], p.shape[3]) / 2**j
             for j, p in enumerate(pyramid)]  # flow_10 (frame 1's grid into frame 0), then flow_01
    truth = waves(1)  # the pattern a quarter of the way
    at_t = warp_loss(pyramid, truth, flows, torch.tensor([0.25]).view(1, 1, 1, 1))
    at_half = warp_loss(pyramid, truth, flows)
    assert float(at_t) < 0.3 * float(at_half)


def test_arbitrary_time_training_lowers_the_loss_and_exports_a_model_the_scheduler_asks_directly(
        data_dir: Path, tmp_path: Path):
    cfg = tiny_config(data=DataConfig(crop=32, max_frames=N, arbitrary_time=True))
    trainer = Trainer(cfg, data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert trainer.model.arbitrary_time and trainer.ema.arbitrary_time
    draws = [trainer.next_batch()[1] for _ in range(8)]
    assert len({float(t) for ts in draws for t in ts}) >= 3  # not the middle alone
    batch, times = trainer.next_batch()
    totals = [trainer.train_step(batch, times)["total"] for _ in range(30)]
    assert np.mean(totals[-5:]) < 0.995 * np.mean(totals[:5]), totals
    path = tmp_path / "any_t.safetensors"
    trainer.export(path)
    model, meta = load_model(path)
    assert model.arbitrary_time and json.loads(meta["training"])["arbitrary_time"] is True
    stats = InterpolationStats()
    out = list(interpolate_frames(list(square_frames(3)), 24, model, ScheduleConfig(factor=3), stats=stats))
    assert len(out) == 7 and stats.max_timing_error == 0  # t = 1/3 and 2/3 exactly, no bisection to 3/8
    assert stats.model_frames == 4


def test_cli_train_arbitrary_time_is_for_film(data_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"),
                                      "--model", "convlstm", "--arbitrary-time"])
    assert result.exit_code == 2
    assert "--arbitrary-time trains film" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_training_runs_the_convolutions_in_half_precision_and_lowers_the_loss(
        data_dir: Path, tmp_path: Path, precision: str):
    trainer = Trainer(tiny_config(precision=precision), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    conv_dtypes = set()
    for m in trainer.model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, args, out: conv_dtypes.add(out.dtype))
    batch, times = trainer.next_batch()
    totals = [trainer.train_step(batch, times)["total"] for _ in range(30)]
    assert conv_dtypes == {AUTOCAST[precision]}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
    assert np.mean(totals[-5:]) < 0.995 * np.mean(totals[:5]), totals
    assert (trainer.scaler is not None) == (precision == "fp16")  # fp16 scales its losses


def test_fp16_loss_scale_is_checkpointed(data_dir: Path, tmp_path: Path):
    cfg = tiny_config(precision="fp16")
    trainer = Trainer(cfg, data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    trainer.train_step(*trainer.next_batch())  # the scaler starts on its first step
    trainer.scaler.update(new_scale=1024.0)  # as after overflows brought it down
    path = trainer.save()
    resumed = Trainer(cfg, data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert resumed.scaler.get_scale() == 65536.0
    resumed.load(path)
    assert resumed.scaler.get_scale() == 1024.0


def test_prefetched_batches_are_the_same_and_checkpoints_hold_the_generator_before_the_batch_ahead(
        data_dir: Path, tmp_path: Path):
    plain = Trainer(tiny_config(), data_dir, tmp_path / "plain", cache_dir=tmp_path / "cache")
    ahead = Trainer(tiny_config(prefetch=True), data_dir, tmp_path / "ahead", cache_dir=tmp_path / "cache")
    for _ in range(3):
        (a, ta), (b, tb) = plain.next_batch(), ahead.next_batch()
        assert torch.equal(a, b) and torch.equal(ta, tb)
        assert ahead.state()["np_rng"] == plain.rng.bit_generator.state  # not the state after the batch ahead
        assert ahead.rng.bit_generator.state != plain.rng.bit_generator.state  # which was drawn already


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup=10, steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(4, cfg) == pytest.approx(5e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)  # the last warm-up step reaches the peak ...
    assert lr_at(10, cfg) == pytest.approx(1e-3)  # ... where the cosine starts
    assert lr_at(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)  # half way down the cosine
    assert lr_at(110, cfg) == pytest.approx(1e-5)
    assert lr_at(500, cfg) == pytest.approx(1e-5)  # past the end: stays at min_lr
    lrs = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def _stop_at(step: int):
    def on_step(s: int, rec: dict) -> None:
        if s == step:
            raise KeyboardInterrupt  # as a Ctrl-C between two steps

    return on_step


@pytest.mark.parametrize(("precision", "prefetch"), [("fp32", False), ("fp16", False), ("fp32", True)])
def test_resume_is_exact(data_dir: Path, tmp_path: Path, precision: str, prefetch: bool):
    cfg = tiny_config(steps=6, precision=precision, prefetch=prefetch)
    whole = Trainer(cfg, data_dir, tmp_path / "whole", cache_dir=tmp_path / "cache")
    whole.run()
    assert whole.step == 6

    first = Trainer(cfg, data_dir, tmp_path / "split", cache_dir=tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        first.run(on_step=_stop_at(3))  # the interrupt saves a checkpoint
    assert first.step == 3
    torch.manual_seed(123)  # a different global RNG state: the checkpoint must restore it
    resumed = Trainer(cfg, data_dir, tmp_path / "split", cache_dir=tmp_path / "cache")
    resumed.load(tmp_path / "split" / "last.pt")
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == 6

    for a, b in [(whole.model, resumed.model), (whole.ema, resumed.ema)]:
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(pa, pb), name  # bit for bit: same process, one thread
    assert not torch.allclose(whole.model.fusion.head.weight, whole.ema.fusion.head.weight)  # EMA really lags
    assert whole.rng.bit_generator.state == resumed.rng.bit_generator.state
    assert whole.opt.param_groups[0]["lr"] == resumed.opt.param_groups[0]["lr"]
    logged = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def exported(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path]:
    """A film-tiny trainer after 3 steps, and its exported (EMA) weights."""
    tmp = tmp_path_factory.mktemp("export")
    threads = torch.get_num_threads()  # set up before the per-test thread fixture
    torch.set_num_threads(1)
    try:
        trainer = Trainer(tiny_config(steps=3), data_dir, tmp / "run", cache_dir=tmp / "cache")
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    path = tmp / "tiny.safetensors"
    trainer.export(path)
    return trainer, path


def test_export_loads_as_the_ema_model(exported):
    trainer, path = exported
    model, meta = load_model(path, expect="film")
    assert meta["architecture"] == "film"
    assert json.loads(meta["config"]) == trainer.ema.config.to_dict()
    assert json.loads(meta["training"])["steps"] == 3
    x0, x1 = torch.rand(2, 1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x0, x1), trainer.ema(x0, x1), atol=1e-6)
        assert not torch.allclose(model(x0, x1), trainer.model(x0, x1), atol=1e-6)  # the EMA, not the raw model


def test_export_checkpoint_tool_gives_the_ema_or_with_raw_the_trained_weights(exported, tmp_path: Path):
    import subprocess
    import sys

    trainer, _ = exported
    x0, x1 = torch.rand(2, 1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    tool = Path(__file__).resolve().parents[1] / "tools" / "export_checkpoint.py"
    for flag, source in (([], trainer.ema), (["--raw"], trainer.model)):
        out = tmp_path / f"w{len(flag)}.safetensors"
        subprocess.run([sys.executable, str(tool), str(trainer.out / "last.pt"), str(out), *flag], check=True,
                       capture_output=True)
        model, meta = load_model(out, expect="film")
        assert json.loads(meta["training"])["ema"] is not bool(flag)
        with torch.no_grad():
            assert torch.allclose(model(x0, x1), source.eval()(x0, x1), atol=1e-6)


def test_cli_interp_with_exported_weights(exported, tmp_path: Path):
    _, weights = exported
    frames = square_frames()
    a, b, mid = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "mid.png"
    write_image(a, frames[0, :30, :42])  # not a multiple of the divisor (4): padded and cropped back
    write_image(b, frames[2, :30, :42])
    result = CliRunner().invoke(
        app, ["interp", str(a), str(b), str(mid), "--weights", str(weights), "--device", "cpu", "--quiet"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    out = read_image(mid)
    assert out.shape == (30, 42, 3)
    model, _ = load_model(weights)
    x0, hw = pad_to_multiple(torch.from_numpy(frames[0, :30, :42]).permute(2, 0, 1)[None].float() / 255, 4)
    x1, _ = pad_to_multiple(torch.from_numpy(frames[2, :30, :42]).permute(2, 0, 1)[None].float() / 255, 4)
    with torch.no_grad():
        want = (crop(model(x0, x1), hw)[0].permute(1, 2, 0) * 255).round().numpy()  # (30, 42, 3)
    assert np.abs(out.astype(float) - want).max() <= 1  # the model's frame, up to rounding


@pytest.mark.parametrize(("precision", "expected"), [("auto", "fp32"), ("bf16", "bf16")])
def test_cli_train_exports_weights(data_dir: Path, tmp_path: Path, precision: str, expected: str):
    weights = tmp_path / "w.safetensors"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(data_dir),
            "--out",
            str(tmp_path / "run"),
            "--preset",
            "film-tiny",
            "--steps",
            "2",
            "--batch",
            "1",
            "--crop",
            "32",
            "--max-frames",
            str(N),
            "--device",
            "cpu",
            "--export",
            str(weights),
            "--precision",
            precision,
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    model, meta = load_model(weights)
    assert json.loads(meta["training"])["steps"] == 2
    assert json.loads(meta["training"]).get("precision", "fp32") == expected  # auto: float32 on the CPU
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == expected
    assert (tmp_path / "run" / "last.pt").exists()


# --- checkpoint: safetensors ---------------------------------------------------------------------------------


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w.f32": torch.randn(2, 3, generator=g),
        "w.f16": torch.randn(4, generator=g).half(),
        "w.bf16": torch.randn(3, 2, generator=g).bfloat16(),
        "steps.i64": torch.tensor([-1, 2**40, 7]),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
    }


def test_safetensors_round_trip(tmp_path: Path):
    tensors, meta = _tensors(), {"architecture": "film", "config": '{"filters": 4}', "version": "1"}
    save_safetensors(tmp_path / "t.safetensors", tensors, meta)
    back, back_meta = load_safetensors(tmp_path / "t.safetensors")
    assert back_meta == meta and read_metadata(tmp_path / "t.safetensors") == meta
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(back[name], t), name
    assert not list(tmp_path.glob(".*partial*"))
    mask = os.umask(0o022)
    os.umask(mask)  # as readable as any file the user writes (safetensors' own temp file is private, 0600)
    assert (tmp_path / "t.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_safetensors_layout_is_standard(tmp_path: Path):
    tensors = _tensors()
    save_safetensors(tmp_path / "t.safetensors", tensors, {"k": "v"})
    data = (tmp_path / "t.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])  # 8-byte little-endian header length
    header = json.loads(data[8 : 8 + n])
    assert header.pop("__metadata__") == {"k": "v"}
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
    end = 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"]):
        spec, t = header[name], tensors[name]
        assert spec["dtype"] == names[t.dtype] and spec["shape"] == list(t.shape), name
        begin, stop = spec["data_offsets"]  # relative to the end of the header, contiguous
        assert begin == end
        raw = data[8 + n + begin : 8 + n + stop]
        assert raw == t.reshape(-1).view(torch.uint8).numpy().tobytes(), name  # little-endian raw bytes
        end = stop
    assert 8 + n + end == len(data)
    # And a file laid out by hand (no padding, no metadata, unsorted offsets) reads back.
    a, b = np.arange(6, dtype="<f4").reshape(2, 3), np.array([3, 1], dtype="<i8")
    head = json.dumps(
        {
            "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        }
    ).encode()
    (tmp_path / "hand.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + a.tobytes() + b.tobytes())
    back, meta = load_safetensors(tmp_path / "hand.safetensors")
    assert meta == {}
    assert torch.equal(back["a"], torch.from_numpy(a)) and torch.equal(back["b"], torch.from_numpy(b))


def _raw(header: object, body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


def test_safetensors_rejects_damaged_files(tmp_path: Path):
    good = tmp_path / "good.safetensors"
    save_safetensors(good, _tensors(), {"k": "v"})
    data = good.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    bad = {
        "truncated_body": data[:-5],
        "truncated_header": data[: 8 + n // 2],
        "too_short": data[:5],
        "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "random_after_length": struct.pack("<Q", 64) + bytes(range(64)) * 2,
        "header_not_object": _raw([1, 2, 3]),
        "odd_byte_count": _raw({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 3]}}, b"abc"),
        "wrong_shape": _raw({"x": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}, bytes(8)),
        "unknown_dtype": _raw({"x": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
        "bad_offsets": _raw({"x": {"dtype": "U8", "shape": [1], "data_offsets": ["a", "b"]}}, bytes(1)),
        "entry_not_object": _raw({"x": "F32"}),
    }
    for name, raw in bad.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(raw)
        with pytest.raises(WeightsError):
            load_safetensors(path)
            pytest.fail(f"{name} was read")
    with pytest.raises(WeightsError):
        read_metadata(tmp_path / "random.safetensors")
    with pytest.raises(WeightsError):
        load_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError):
        load_model(tmp_path / "truncated_body.safetensors")


def test_vimeo_layout_trains_on_its_training_list_only(tmp_path: Path):
    frames = square_frames(7)
    root = tmp_path / "vimeo_septuplet"
    for seq, first in (("00001/0001", 0), ("00001/0002", 2)):
        for k in range(3):
            folder = root / "sequences" / seq
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / f"im{k + 1}.png", frames[first + k])
    (root / "sep_trainlist.txt").write_text("00001/0001\n")
    (root / "sep_testlist.txt").write_text("00001/0002\n")
    assert find_clips(root) == [root / "sequences" / "00001" / "0001"]
    ds = TripletDataset(root, DataConfig(crop=48, strides=(1,), max_frames=N, half_scale_prob=0.0, **NO_AUG))
    x = (ds.sample(np.random.default_rng(0)) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # (3, 48, 48, 3): im1, im3, then the truth im2, cropped at one place (the gradient makes it unique)
    found = [(y, xx) for y in range(48 - 48 + 1) for xx in range(64 - 48 + 1)
             if np.array_equal(x[0], frames[0, y:y + 48, xx:xx + 48])]
    assert len(found) == 1
    y, xx = found[0]
    assert np.array_equal(x[1], frames[2, y:y + 48, xx:xx + 48])
    assert np.array_equal(x[2], frames[1, y:y + 48, xx:xx + 48])


def test_motion_crops_keep_the_moving_part(data_dir: Path):
    """The square moves in a 10-px band of a 48-px frame: uniform 20-px crops often miss it, the most moving
    of 8 places hardly ever does."""
    def moving_share(k: int) -> float:
        ds = TripletDataset(data_dir, DataConfig(crop=20, strides=(1,), max_frames=N, half_scale_prob=0.0,
                                                 motion_crops=k, **NO_AUG))
        rng = np.random.default_rng(0)
        samples = [ds.sample(rng) for _ in range(40)]
        return float(np.mean([float((x[0] - x[1]).abs().max()) > 0 for x in samples]))

    uniform, picked = moving_share(1), moving_share(8)
    assert uniform < 0.8 and picked >= 0.95 and picked > uniform + 0.2, (uniform, picked)


def test_cli_export_works_from_a_run_stopped_by_max_minutes(data_dir: Path, tmp_path: Path):
    """A run stopped by its time limit still writes the weights of the step it reached (and its checkpoint)."""
    weights = tmp_path / "w.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--preset",
                                 "film-tiny", "--steps", "1000", "--batch", "1", "--crop", "32", "--max-frames", str(N),
                                 "--device", "cpu", "--max-minutes", "0.0001", "--export", str(weights)])
    assert result.exit_code == 0, (result.output, result.exception)
    steps = json.loads(load_model(weights)[1]["training"])["steps"]
    assert 1 <= steps < 1000
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == steps


def test_cli_refiner_with_a_selector_is_one_error_line(tmp_path: Path):
    from typer.testing import CliRunner

    from framefill.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--refiner", "8", "--selector", "8",
                                      "--out", str(tmp_path / "r"), "--steps", "1"])
    assert result.exit_code == 2 and "separate runs" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_cli_unwarped_without_a_selector_is_one_error_line(tmp_path: Path):
    from typer.testing import CliRunner

    from framefill.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--unwarped", "--out", str(tmp_path / "r"),
                                      "--steps", "1"])
    assert result.exit_code == 2 and "--selector" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("extra", "message"), [
    (["--out", "{tmp}/file.txt"], "is a file; give a folder for the run"),
    (["--export", "{tmp}/nodir/w.safetensors"], "does not exist; create it first"),
    (["--max-minutes", "0"], "is not a time limit"),
    (["--max-minutes", "-1"], "is not a time limit"),
    (["--max-minutes", "nan"], "is not a time limit"),
    (["--crop", "33"], "not a multiple of 4"),
    (["--data", "{tmp}/empty"], "no videos or frame folders found"),
], ids=["out is a file", "export folder missing", "max-minutes 0", "max-minutes -1", "max-minutes nan",
        "crop not a multiple", "no clips"])
def test_cli_train_refuses_bad_options_before_training_and_leaves_no_run_folder(
        data_dir: Path, tmp_path: Path, extra: list[str], message: str):
    (tmp_path / "file.txt").write_text("notes\n")
    (tmp_path / "empty").mkdir()
    extra = [x.replace("{tmp}", str(tmp_path)) for x in extra]
    args = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--preset", "film-tiny", "--steps", "1",
            "--batch", "1", "--crop", "32", "--max-frames", str(N), "--device", "cpu"]
    result = CliRunner().invoke(app, args + extra)
    assert result.exit_code == 2 and message in result.output, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "file.txt").read_text() == "notes\n"


def test_cli_train_says_in_one_line_when_a_checkpoint_cannot_be_resumed(data_dir: Path, tmp_path: Path):
    """A damaged last.pt, or one of another preset, is one error line that names it; the run folder keeps its
    config (the run it holds is not the one asked for)."""
    args = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "1",
            "--crop", "32", "--max-frames", str(N), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--preset", "film-tiny"])
    assert result.exit_code == 0, (result.output, result.exception)
    config = (tmp_path / "run" / "config.json").read_text()
    last = tmp_path / "run" / "last.pt"
    result = CliRunner().invoke(app, [*args, "--preset", "film-s", "--steps", "2"])
    assert result.exit_code == 2 and "another model or preset" in result.output, (result.output, result.exception)
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    result = CliRunner().invoke(app, [*args, "--preset", "film-tiny", "--steps", "2"])
    assert result.exit_code == 2 and f"cannot resume from {last}: it is damaged" in result.output, result.output
    assert "Traceback" not in result.output and (tmp_path / "run" / "config.json").read_text() == config
    last.write_bytes(good)
    result = CliRunner().invoke(app, [*args, "--preset", "film-tiny", "--steps", "2"])
    assert result.exit_code == 0 and "resumed from" in result.output, (result.output, result.exception)
