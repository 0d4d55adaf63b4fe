"""Synthetic triplets from photos: loading, the exact middle frame, whole-pixel shifts, occlusion, determinism,
mixing with clips, resume, and ``framefill train --photos``.

CPU only and tiny (photos of 96x128, crops of 32-48 px, the ``film-tiny`` preset): the file runs in seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import moving_square, write_clip
from typer.testing import CliRunner

from framefill.checkpoint import read_metadata
from framefill.cli import app
from framefill.train import drawn
from framefill.train.data import DataConfig, TripletDataset
from framefill.train.loop import TrainConfig, Trainer
from framefill.train.sources import MixedTriplets, training_source
from framefill.train.synth import (
    Layer,
    Motion,
    Scene,
    SynthConfig,
    SyntheticTriplets,
    owners,
    render,
)

NO_AUG = {"flip_prob": 0.0, "rot90_prob": 0.0, "reverse_prob": 0.0, "jitter": 0.0}
H, W = 96, 128  # test photos


# Two cores shared with other work; one thread also keeps CPU results bit-for-bit repeatable.
pytestmark = pytest.mark.usefixtures("one_thread")


def texture(seed: int) -> np.ndarray:
    """A random smooth colour texture with fine detail, ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    fine = rng.random((H, W, 3)).astype(np.float32)
    return np.clip(200 * coarse + 55 * fine, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photos (one in a subfolder, one grey) and a file that is not a photo."""
    root = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(root / "a.png"), texture(0))
    (root / "more").mkdir()
    cv2.imwrite(str(root / "more" / "b.png"), texture(1))
    grey = cv2.cvtColor(texture(2), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(root / "more" / "c.jpg"), grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / "more" / "c_metadata.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_clip(root / "square", list(moving_square()))
    return root


def synth(photos: Path, crop: int = 32, aug: bool = False, **kw) -> SyntheticTriplets:
    return SyntheticTriplets(photos, DataConfig(crop=crop, **({} if aug else NO_AUG)), SynthConfig(**kw))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()  # (3, h, w, 3)


# --- photos and samples --------------------------------------------------------------------------------------


def test_photos_are_found_recursively_and_kept_small(photos: Path):
    ds = synth(photos, max_side=64)
    assert [Path(n).relative_to(photos).as_posix() for n in ds.names] == ["a.png", "more/b.png", "more/c.jpg"]
    assert all(max(levels[0].shape[:2]) == 64 and levels[0].shape[2] == 3 for levels in ds.levels)
    with pytest.raises(ValueError, match="no readable photos"):
        synth(photos / "more" / "c_metadata.json")


@pytest.mark.parametrize("size", [None, 40, (24, 48), (90, 160)])
def test_sample_shape_dtype_and_range(photos: Path, size):
    ds = synth(photos, aug=True)
    rng = np.random.default_rng(0)
    h, w = (32, 32) if size is None else (size, size) if isinstance(size, int) else size
    for _ in range(3):
        x = ds.sample(rng, size)
        assert x.shape == (3, 3, h, w) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1


def test_same_seed_same_samples(photos: Path):
    ds = synth(photos, aug=True)
    a = [ds.sample(np.random.default_rng(7)) for _ in range(2)]
    b = ds.sample(np.random.default_rng(8))
    assert torch.equal(a[0], a[1])
    assert not torch.equal(a[0], b)


# --- exactness -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_middle_is_the_scene_rendered_at_half_time(photos: Path, seed):
    ds = synth(photos, crop=48, sprites=(1, 3), accel=0.5)
    trip = to_uint8(ds.sample(np.random.default_rng(seed)))  # (in0, in1, gt)
    scene = ds.scene(np.random.default_rng(seed))  # the same draws: the same scene
    assert np.array_equal(trip[0], render(scene, 0.0))
    assert np.array_equal(trip[1], render(scene, 1.0))
    still = scene.at(0.5)  # every layer frozen at t = 0.5, rendered at another time: an independent rendering
    assert np.array_equal(trip[2], render(still, 0.0))
    assert np.array_equal(render(still, 0.0), render(still, 1.0))
    blend = (trip[0].astype(float) + trip[1]) / 2
    assert np.abs(trip[2] - blend).mean() > 1  # the middle is no blend of the outer frames


@pytest.mark.parametrize("move", [(8, -6), (-4, 10), (0, 0)])
def test_pure_translation_shifts_the_photo_by_whole_pixels(photos: Path, move):
    photo = synth(photos).levels[0][0]  # (H, W, 3) uint8, as loaded
    x0, y0, h, w = 20, 30, 24, 40
    scene = Scene(size=(h, w), layers=(Layer(photo, Motion(src=(x0, y0), dst=(0, 0), src_move=move)),))
    for t in (0.0, 0.5, 1.0):
        x, y = x0 + round(t * move[0]), y0 + round(t * move[1])
        assert np.array_equal(render(scene, t), photo[y : y + h, x : x + w]), t


def test_translated_sprite_moves_by_whole_pixels(photos: Path):
    bg = np.full((64, 64, 3), 40, dtype=np.uint8)
    rgba = np.dstack([synth(photos).levels[1][0][:16, :16], np.full((16, 16), 255, np.uint8)])  # an opaque square
    sprite = Layer(rgba, Motion(src=(0, 0), dst=(10, 20), dst_move=(12, -8)))
    scene = Scene(size=(64, 64), layers=(Layer(bg, Motion(src=(0, 0), dst=(0, 0))), sprite))
    for t in (0.0, 0.5, 1.0):
        frame, x, y = render(scene, t), 10 + round(12 * t), 20 - round(8 * t)
        assert np.array_equal(frame[y : y + 16, x : x + 16], rgba[..., :3]), t
        assert (owners(scene, t) == 1).sum() == 16 * 16


def test_sprites_occlude_and_uncover(photos: Path):
    ds = synth(photos, crop=48, sprites=(2, 2))
    rng = np.random.default_rng(1)
    covered = uncovered = 0
    for _ in range(4):
        scene = ds.scene(rng)
        assert len(scene.layers) == 3 and all(ly.image.shape[2] == 4 for ly in scene.layers[1:])
        first, last = owners(scene, 0.0), owners(scene, 1.0)
        covered += int(((first == 0) & (last > 0)).sum())  # background hidden by the end
        uncovered += int(((first > 0) & (last == 0)).sum())  # background revealed by the end
        bare = render(Scene(scene.size, scene.layers[:1]), 0.0)
        on_top = first > 0
        assert np.abs(render(scene, 0.0)[on_top].astype(int) - bare[on_top]).mean() > 5  # sprites show
    assert covered > 50 and uncovered > 50


# --- mixing with clips -------------------------------------------------------------------------------------


class FakeClips:
    """Stands in for a TripletDataset: every sample is -1 (no real frame is), drawn with one RNG call."""

    def draw(self, rng: np.random.Generator) -> float:
        return rng.random()

    def build(self, d: float) -> tuple[torch.Tensor, float]:
        return torch.full((3, 3, 32, 32), -1.0), 0.5

    def summary(self) -> dict[str, int]:
        return {"clips": 1, "triplets": 10}


@pytest.mark.parametrize("aug", [{}, {"flip_x": True}, {"flip_y": True}, {"quarter_turns": 1},
                                 {"quarter_turns": 3, "flip_x": True}, {"reverse": True, "quarter_turns": 2}])
def test_exact_motion_reads_the_truth_from_each_input(photos: Path, aug: dict):
    """Each input read along the exact motion (``SyntheticTriplets.motion``) is the truth wherever the truth's pixel
    is in view in that input, under every flip, rotation and reversal the frames get, far better than along that
    motion moved by 1 px or than the inputs as they are."""
    from framefill.models.layers import warp
    from framefill.train.data import Augmentation
    from framefill.train.synth import SceneDraw

    src = synth(photos, crop=48, sprites=(1, 2), shift=0.08, sprite_shift=0.1)
    scene = src.scene(np.random.default_rng(3))
    d = SceneDraw(scene, 0.5, Augmentation(**aug))
    frames, _ = src.build(d)  # (3, 3, 48, 48)
    motion = src.motion(d)  # (4, 48, 48)
    assert motion.shape == (4, 48, 48) and motion.abs().max() > 1
    truth = frames[2:3]
    for k in (0, 1):
        errors = []  # the exact motion, then moved 1 px each way, then no motion (the median over inner pixels)
        for off in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), None]:
            m = torch.zeros(1, 2, 48, 48) if off is None else motion[None, 2 * k:2 * k + 2] + torch.tensor(
                off, dtype=torch.float32).view(1, 2, 1, 1)
            errors.append(float((warp(frames[k:k + 1], m) - truth).abs().mean(1)[0, 6:-6, 6:-6].median()))
        assert errors[0] < 0.7 * min(errors[1:]), (k, aug, errors)  # (resampling a noisy texture twice: not 0)


# --- drawn scenes -------------------------------------------------------------------------------------------


def test_drawn_pictures_are_thin_lines_and_flat_colour():
    """A drawn background is flat paper with ink lines a few pixels wide (a 5x5 erosion leaves little of them),
    far from the paper in brightness; a drawn sprite keeps a transparent margin."""
    rng = np.random.default_rng(0)
    for _ in range(4):
        ink, paper = drawn.palette(rng)
        assert abs(int(ink.astype(int).mean()) - int(paper.astype(int).mean())) > 120
        pic = drawn.picture(rng, (256, 256), ink, paper, 1.0)  # (256, 256, 3)
        is_ink = (np.abs(pic.astype(int) - ink).max(-1) < 30).astype(np.uint8)
        is_paper = np.abs(pic.astype(int) - paper).max(-1) < 3
        assert 0.002 < is_ink.mean() < 0.3 and is_paper.mean() > 0.3
        assert cv2.erode(is_ink, np.ones((5, 5), np.uint8)).sum() < 0.2 * is_ink.sum()
        rgba = drawn.sprite(rng, 64, ink, paper, 2.0)
        assert rgba.shape == (64, 64, 4) and rgba[..., 3].max() == 255
        assert not rgba[:2, :, 3].any() and not rgba[:, -2:, 3].any()


def test_drawn_scenes_mix_with_photographed_ones(photos: Path):
    src = synth(photos, crop=48, drawn=0.5)
    rng = np.random.default_rng(0)
    drawn_bg = 0
    for _ in range(40):
        bg = src.scene(rng).layers[0].image
        drawn_bg += not any(any(bg is level for level in levels) for levels in src.levels)
    assert 10 <= drawn_bg <= 30
    a, b = (synth(photos, crop=48, drawn=0.5, aug=True).sample(np.random.default_rng(3)) for _ in range(2))
    assert torch.equal(a, b)


def test_exact_motion_of_drawn_scenes(photos: Path):
    """Read along the exact motion, a drawn scene's inputs give its truth on more pixels than along that motion
    moved by 1 px or not at all (occlusions are wrong in all: counted over 4 scenes, flipped and turned)."""
    from framefill.models.layers import warp
    from framefill.train.data import Augmentation
    from framefill.train.synth import SceneDraw

    src = synth(photos, crop=96, drawn=1.0, sprites=(1, 2), shift=0.08, sprite_shift=0.1)
    wrong = np.zeros(6)  # the exact motion, moved 1 px each way, no motion
    for seed in range(4):
        d = SceneDraw(src.scene(np.random.default_rng(seed)), 0.5, Augmentation(flip_x=True, quarter_turns=1))
        frames, _ = src.build(d)
        motion = src.motion(d)  # (4, 96, 96)
        for k in (0, 1):
            for i, off in enumerate([(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), None]):
                m = torch.zeros(1, 2, 96, 96) if off is None else motion[None, 2 * k:2 * k + 2] + torch.tensor(
                    off, dtype=torch.float32).view(1, 2, 1, 1)
                error = (warp(frames[k:k + 1], m) - frames[2:3]).abs().mean(1)[0, 6:-6, 6:-6]
                wrong[i] += float((error > 0.1).float().mean())
    assert wrong[0] < 0.75 * wrong[1:].min(), wrong


def test_clips_have_no_exact_motion(photos: Path, clips: Path):
    mixed = MixedTriplets(TripletDataset(clips, DataConfig(crop=32, **NO_AUG)), synth(photos), 0.5)
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(12):
        d = mixed.draw(rng)
        kinds.add(mixed.motion(d) is None)
    assert kinds == {True, False}


def test_mixed_sampling_respects_the_ratio(photos: Path):
    mixed = MixedTriplets(FakeClips(), synth(photos), 0.3)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    synthetic = [bool(mixed.sample(rng).min() >= 0) for _ in range(400)]
    assert abs(np.mean(synthetic) - 0.3) < 0.07  # 3 standard deviations
    again = np.random.default_rng(0)
    assert [bool(mixed.sample(again).min() >= 0) for _ in range(400)] == synthetic  # deterministic
    assert mixed.summary() == {"clips": 1, "triplets": 10, "photos": 3, "synthetic": 0.3}


def test_training_source(photos: Path, clips: Path):
    cfg = DataConfig(crop=32, max_frames=12)
    assert type(training_source(clips, None, cfg, SynthConfig(ratio=0.3))) is TripletDataset  # as before
    assert type(training_source(clips, photos, cfg, SynthConfig())) is TripletDataset  # ratio 0: photos unused
    mixed = training_source(clips, photos, cfg, SynthConfig(ratio=0.5))
    assert isinstance(mixed, MixedTriplets) and isinstance(mixed.clips, TripletDataset)
    alone = training_source(None, photos, cfg, SynthConfig(ratio=1.0))
    assert isinstance(alone, MixedTriplets) and alone.clips is None
    rng = np.random.default_rng(0)
    assert alone.sample(rng).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="give clips"):
        training_source(None, photos, cfg, SynthConfig(ratio=0.5))
    with pytest.raises(ValueError, match="nothing to train on"):
        training_source(None, None, cfg, SynthConfig())


def test_resume_with_synthetic_triplets_is_exact(photos: Path, clips: Path, tmp_path: Path):
    cfg = TrainConfig(model="film", preset="film-tiny", steps=4, batch=2, warmup=2, ema=0.9, ckpt_every=1000,
                      data=DataConfig(crop=32, max_frames=12), synth=SynthConfig(ratio=0.5))
    kw = {"cache_dir": tmp_path / "cache", "photos": photos}
    whole = Trainer(cfg, clips, tmp_path / "whole", **kw)
    whole.run()
    first = Trainer(cfg, clips, tmp_path / "split", **kw)

    def stop(step: int, rec: dict) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.run(on_step=stop)
    resumed = Trainer(cfg, clips, tmp_path / "split", **kw)
    resumed.load(tmp_path / "split" / "last.pt")
    resumed.run()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert whole.rng.bit_generator.state == resumed.rng.bit_generator.state
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["synth"]["ratio"] == 0.5


def test_refiner_batches_carry_the_exact_motion_of_rendered_scenes(photos: Path, clips: Path, tmp_path: Path):
    """With ``refiner``, a batch also holds each sample's exact motion (NaN for clips), and it is the end-point
    target of those samples: the term differs from the privileged target's alone and falls as the refiner trains."""
    cfg = TrainConfig(model="film", preset="film-tiny", steps=20, batch=4, lr=1e-2, warmup=1, refiner=4,
                      data=DataConfig(crop=32, max_frames=12, **NO_AUG), synth=SynthConfig(ratio=0.5))
    trainer = Trainer(cfg, clips, tmp_path / "run", cache_dir=tmp_path / "cache", photos=photos)
    for _ in range(10):  # a batch with both kinds of sample
        frames, times, motion = trainer.next_batch()
        known = ~motion.isnan().flatten(1).any(1)
        if known.any() and not known.all():
            break
    assert motion.shape == (4, 4, 32, 32)
    assert known.any() and not known.all() and motion[~known].isnan().all() and not motion[known].isnan().any()
    from framefill.train.loop import refiner_terms
    with torch.no_grad():
        with_exact = refiner_terms(trainer.model, frames, cfg, motion)["epe"]
        without = refiner_terms(trainer.model, frames, cfg)["epe"]
    assert not torch.isclose(with_exact, without)
    recs = [trainer.train_step(frames, times, motion)["epe"] for _ in range(15)]
    assert np.mean(recs[-3:]) < np.mean(recs[:3]), recs


# --- the command line ----------------------------------------------------------------------------------------


def train(tmp_path: Path, *args: str):
    base = ["train", "--out", str(tmp_path / "run"), "--preset", "film-tiny", "--steps", "2", "--batch", "2",
            "--crop", "32", "--max-frames", "12", "--device", "cpu"]
    return CliRunner().invoke(app, [*base, *args])


def test_cli_train_with_photos_and_clips(photos: Path, clips: Path, tmp_path: Path):
    weights = tmp_path / "w.safetensors"
    result = train(tmp_path, "--data", str(clips), "--photos", str(photos), "--synthetic", "0.5", "--export",
                   str(weights))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "3 photos (50% of triplets synthetic, 25% of those drawn)" in re.sub(r"\s+", " ", result.stderr)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["synth"]["ratio"] == 0.5 and config["synth"]["drawn"] == 0.25
    assert json.loads(read_metadata(weights)["training"])["synthetic"] == 0.5


def test_cli_train_with_photos_alone(photos: Path, tmp_path: Path):
    result = train(tmp_path, "--photos", str(photos))
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["synth"]["ratio"] == 1.0


def test_cli_train_refiner_with_rendered_scenes(photos: Path, tmp_path: Path):
    result = train(tmp_path, "--photos", str(photos), "--refiner", "4", "--epe-weight", "0.5")
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["refiner"] == 4 and config["w_epe"] == 0.5
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(rec["epe"] > 0 for rec in log)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to learn from"),
        (["--data", "CLIPS", "--synthetic", "0.5"], "needs --photos"),
        (["--photos", "PHOTOS", "--synthetic", "0.5"], "leaves 50% of the triplets to --data"),
        (["--photos", "missing"], "--photos missing does not exist"),
        (["--data", "CLIPS", "--drawn", "0.5"], "--drawn 0.5 is a share of the synthetic triplets"),
        (["--data", "CLIPS", "--strides", "1,x"], "--strides '1,x' is not a comma-separated list"),
        (["--data", "CLIPS", "--strides", "0,2"], "--strides '0,2' is not a comma-separated list"),
    ],
)
def test_cli_train_refuses_bad_sources(photos: Path, clips: Path, tmp_path: Path, args, message):
    args = [{"CLIPS": str(clips), "PHOTOS": str(photos)}.get(a, a) for a in args]
    result = train(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in re.sub(r"\s+", " ", result.stderr)
    assert not (tmp_path / "run").exists()
