"""The adversarial stage (--gan): discriminator shapes, the non-saturating losses, a training step that updates
both sides, exact resume with the critics, and the CLI flag. CPU and tiny."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square, write_clip
from typer.testing import CliRunner

from framefill.cli import app
from framefill.train.data import DataConfig
from framefill.train.gan import (
    Critics,
    FrameDiscriminator,
    GanConfig,
    TupleDiscriminator,
    critic_loss,
    generator_loss,
)
from framefill.train.loop import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
N = 12


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_clip(root / "square", list(moving_square(n=N)))
    return root


def test_discriminator_shapes():
    assert FrameDiscriminator(8)(torch.rand(2, 3, 32, 48)).shape == (2, 1, 2, 4)
    assert TupleDiscriminator(8)(torch.rand(2, 3, 3, 32, 48)).shape == (2, 1, 1, 2, 4)
    logits = Critics(GanConfig(filters=8))(*torch.rand(3, 2, 3, 32, 32))
    assert [tuple(x.shape) for x in logits] == [(2, 1, 2, 2), (2, 1, 1, 2, 2)]


def test_non_saturating_losses_match_their_formulas():
    real, fake = [torch.full((2, 1, 3, 3), 2.0)], [torch.full((2, 1, 3, 3), -1.0)]
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
    assert float(critic_loss(real, fake, [1.0])) == pytest.approx(sp(-2.0) + sp(-1.0))
    assert float(generator_loss(fake, [1.0])) == pytest.approx(sp(1.0))  # -log(sigmoid(-1))
    assert float(generator_loss(fake + fake, [1.0, 0.5])) == pytest.approx(1.5 * sp(1.0))


def tiny(model: str = "film", **kw: object) -> TrainConfig:
    base = {"model": model, "preset": f"{model}-tiny", "steps": 4, "batch": 2, "lr": 3e-3, "warmup": 2,
            "ema": 0.9, "ckpt_every": 1000, "data": DataConfig(crop=32, max_frames=N),
            "gan": GanConfig(enabled=True, filters=8, weight=0.1)}
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize(("model", "precision"), [("film", "fp32"), ("convlstm", "fp32"), ("film", "fp16")])
def test_a_gan_step_updates_the_model_and_the_critics(data_dir: Path, tmp_path: Path, model: str, precision: str):
    trainer = Trainer(tiny(model, precision=precision), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    before = {k: v.clone() for k, v in trainer.critics.state_dict().items()}
    model_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rec = trainer.train_step(*trainer.next_batch())
    assert rec["adv"] > 0 and rec["critic"] > 0 and math.isfinite(rec["total"])
    assert any(not torch.equal(before[k], v) for k, v in trainer.critics.state_dict().items())
    assert any(not torch.equal(model_before[k], v) for k, v in trainer.model.state_dict().items())


def test_the_critic_learns_to_tell_blur_from_truth(data_dir: Path, tmp_path: Path):
    """A fixed 'model' output (a blurred middle) against the truth: the critic's loss falls below chance."""
    trainer = Trainer(tiny(), data_dir, tmp_path / "run", cache_dir=tmp_path / "cache")
    batch, _ = trainer.next_batch()
    blurred = torch.nn.functional.avg_pool2d(batch[:, -1], 5, 1, 2)
    losses = [float(trainer._critic_step(batch, blurred)) for _ in range(60)]
    chance = 2 * 2 * math.log(2)  # two critics, each log 2 on real and on fake
    assert losses[0] == pytest.approx(chance, rel=0.1) and losses[-1] < 0.8 * chance


def test_resume_with_critics_is_exact(data_dir: Path, tmp_path: Path):
    whole = Trainer(tiny(), data_dir, tmp_path / "whole", cache_dir=tmp_path / "cache")
    whole.run()
    split = Trainer(tiny(), data_dir, tmp_path / "split", cache_dir=tmp_path / "cache")

    def stop(step: int, rec: dict) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        split.run(on_step=stop)
    resumed = Trainer(tiny(), data_dir, tmp_path / "split", cache_dir=tmp_path / "cache")
    resumed.load(tmp_path / "split" / "last.pt")
    resumed.run()
    for a, b in [(whole.model, resumed.model), (whole.critics, resumed.critics)]:
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(pa, pb), name


def test_cli_gan_flag_trains_and_exports(data_dir: Path, tmp_path: Path):
    weights = tmp_path / "g.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--preset", "film-tiny", "--out",
                                      str(tmp_path / "run"), "--steps", "2", "--batch", "2", "--crop", "32",
                                      "--max-frames", str(N), "--gan", "--gan-weight", "0.05", "--export",
                                      str(weights), "--device", "cpu"])
    assert result.exit_code == 0, (result.output, result.exception)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("adv" in r and "critic" in r for r in log)
    from framefill.checkpoint import read_metadata

    assert json.loads(read_metadata(weights)["training"])["gan"] == 0.05
    assert np.isfinite([r["total"] for r in log]).all()
