"""film's learned weights inside its Lucas-Kanade updates (``film_parts.LKWeights``): they start as film exactly,
a weight steers the update toward the pixels it trusts (a save and load: test_refiner), training moves them alone
toward the exact motion of rendered scenes or the flow composed through the true middle frame, and that composed
flow adds its two halves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_refiner import _texture
from test_synth import NO_AUG, texture

from framefill.models.film import build_film
from framefill.models.layers import lucas_kanade_step
from framefill.train.data import DataConfig
from framefill.train.loop import TrainConfig, Trainer, compose_through, initial_model, lk_weight_terms
from framefill.train.synth import SynthConfig


def test_with_lk_weights_starts_as_film_and_its_weights_move_the_output():
    torch.manual_seed(0)  # the tiny model's own weights set how far its flows move with these
    model = build_film("film-tiny").eval()
    weighted = model.with_lk_weights(4).eval()
    assert weighted.config.lk_weight_filters == 4 and model.flow.weights is None
    assert weighted.with_lk_weights(8) is weighted  # one that has them keeps them
    x0 = _texture()
    x1 = torch.cat([torch.roll(x0, 3, 3)[..., :32], torch.roll(x0, -2, 2)[..., 32:]], dim=3)  # two motions
    with torch.no_grad():
        ref, ref_flow = model(x0, x1), model.flow_pyramids(x0, x1)[3][0]
        assert torch.equal(weighted(x0, x1), ref)
        weighted.flow.weights.head.weight.normal_(0, 4.0)  # log-weights across their +-4 range
        moved, moved_flow = weighted(x0, x1), weighted.flow_pyramids(x0, x1)[3][0]
    assert (moved_flow - ref_flow).abs().mean() > 1e-3 and not torch.equal(moved, ref)


def test_unit_weights_give_the_plain_update_and_a_weight_picks_whose_motion_it_follows():
    torch.manual_seed(0)
    a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 44), 5, stride=1)  # (1, 1, 36, 40)
    b = a.clone()
    b[..., :20] = torch.roll(a, 1, 3)[..., :20]  # the left half moved 1 px right, the right half stayed
    plain = lucas_kanade_step(a, b, 9, 1e-3)
    assert torch.equal(lucas_kanade_step(a, b, 9, 1e-3, weight=torch.ones_like(a)), plain)
    trust_left = torch.ones_like(a)
    trust_left[..., 20:] = 1e-3  # at the boundary, count the left half only
    steered = lucas_kanade_step(a, b, 9, 1e-3, weight=trust_left)
    at = (slice(None), 0, slice(8, 28), 20)  # the column right of the boundary: its window straddles both
    assert steered[at].mean() > plain[at].mean() + 0.2  # pulled toward the left half's 1 px


def test_lk_weights_train_alone_toward_the_exact_motion(tmp_path: Path):
    """``--lk-weights``: only the weights move, the loss is the flows' end-point error against the exact motion of
    rendered scenes, and it falls on a fixed batch; without the exact motion (as for clips) the target is the flow
    composed through the true middle frame, another loss that training lowers too."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"{i}.png"), texture(i))
    cfg = TrainConfig(model="film", preset="film-tiny", steps=40, batch=4, lr=1e-2, warmup=1, lk_weights=4,
                      data=DataConfig(crop=32, **NO_AUG), synth=SynthConfig(ratio=1.0))
    trainer = Trainer(cfg, None, tmp_path / "run", cache_dir=tmp_path / "cache", photos=photos)
    assert trainer.model.config.lk_weight_filters == 4
    frames, times, motion = trainer.next_batch()
    assert not motion.isnan().any()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    recs = [trainer.train_step(frames, times, motion) for _ in range(25)]
    assert set(recs[0]) == {"epe", "total", "gnorm", "lr"}
    epes = [r["epe"] for r in recs]
    assert np.mean(epes[-3:]) < np.mean(epes[:3]), epes
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("flow.weights."))
    assert not torch.equal(before["flow.weights.head.weight"], after["flow.weights.head.weight"])
    unknown = torch.full_like(motion, float("nan"))
    composed = [trainer.train_step(frames, times, unknown)["epe"] for _ in range(15)]
    with torch.no_grad():
        assert float(lk_weight_terms(trainer.model, frames, motion)["epe"]) != composed[-1]
    assert np.mean(composed[-3:]) < np.mean(composed[:3]), composed


def test_the_composed_flow_adds_the_two_halves():
    """``compose_through``: a pattern moving 2 px right from frame 0 to the middle and 2 px more to frame 1 composes
    to the sum of the two halves' flows, about twice either, in both directions."""
    model = build_film("film-tiny").eval()
    x0 = _texture(48, 48)
    mid, x1 = torch.roll(x0, 2, 3), torch.roll(x0, 4, 3)
    f01, f10 = compose_through(model, x0, mid, x1)
    inner = (..., slice(12, -12), slice(12, -12))
    with torch.no_grad():
        half_0m = model.flow_pyramids(x0, mid)[3][0][1:, 0][inner].mean()
        half_m1 = model.flow_pyramids(mid, x1)[3][0][1:, 0][inner].mean()
    assert 1.5 < half_0m < 2.5 and 1.5 < half_m1 < 2.5
    assert abs(float(f01[:, 0][inner].mean() - (half_0m + half_m1))) < 0.3
    assert abs(float(f10[:, 0][inner].mean() + (half_0m + half_m1))) < 0.3


def test_lk_weights_train_in_a_run_of_their_own():
    with pytest.raises(ValueError, match="separate runs"):
        initial_model(TrainConfig(model="film", preset="film-tiny", lk_weights=4, refiner=4))
    with pytest.raises(ValueError, match="for film"):
        initial_model(TrainConfig(model="convlstm", preset="convlstm-tiny", lk_weights=4))


@pytest.mark.parametrize("extra, message", [
    (["--refiner", "8"], "separate runs"),
    (["--model", "convlstm"], "for film"),
])
def test_cli_lk_weights_refusals_are_one_error_line(tmp_path: Path, extra: list[str], message: str):
    from typer.testing import CliRunner

    from framefill.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--lk-weights", "8", "--out",
                                      str(tmp_path / "r"), "--steps", "1", *extra])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_lk_weights_refuse_several_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Their step calls the flow pyramid directly, so under torchrun the ranks' gradients would not be averaged."""
    from framefill.train import distributed

    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 2))
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0.png"), texture(0))
    cfg = TrainConfig(model="film", preset="film-tiny", batch=2, lk_weights=4, data=DataConfig(crop=32),
                      synth=SynthConfig(ratio=1.0))
    with pytest.raises(ValueError, match="one process"):
        Trainer(cfg, None, tmp_path / "run", cache_dir=tmp_path / "cache", photos=photos)
