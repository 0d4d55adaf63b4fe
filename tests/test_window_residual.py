"""Training convlstm's ConvLSTM synthesis and attention refinement alone from a cache of windows (``train --model
convlstm --residual-cache N``): the cache holds film's gated frame and the aligned window and is reused, cached
steps teach the stages what the outer frames know, and the CLI runs it end to end, exports it and refuses it where
it does not apply. CPU only and tiny (``convlstm-tiny``, 32 px)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cached_stage_run
from typer.testing import CliRunner

from framefill.cli import app
from framefill.models import load_model
from framefill.models.convlstm import PRESETS, ConvLSTMNet
from framefill.train.cached import CacheConfig
from framefill.train.window_residual import build_cache, held_out_scores, residual_loss, train_residual

pytestmark = pytest.mark.usefixtures("one_thread")


class Windows:
    """A stand-in training source of random windows ``(5, 3, 32, 32)``, counting what it draws."""

    def __init__(self) -> None:
        self.drawn = 0

    def sample(self, rng: np.random.Generator) -> torch.Tensor:
        self.drawn += 1
        return torch.from_numpy(rng.random((5, 3, 32, 32))).float()


def test_cache_holds_films_frame_and_the_aligned_window_and_is_reused(tmp_path: Path):
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
    windows, path = Windows(), tmp_path / "residual_cache.pt"
    cache = build_cache(model, windows, 3, np.random.default_rng(0), path)
    assert cache["aligned"].shape == (3, 4, 3, 32, 32) and cache["base"].shape == cache["truth"].shape == (3, 3, 32, 32)
    window = Windows().sample(np.random.default_rng(0))  # the first window drawn again
    with torch.no_grad():
        film = model.film(window[None, 1], window[None, 2])[0]  # an untrained gate is shut: film's frame as it is
    assert torch.allclose(cache["base"][0].float(), film, atol=2e-3)
    assert torch.equal(cache["truth"][0], window[4].half())
    again = build_cache(model, windows, 2, np.random.default_rng(7), path)  # as many or fewer: read, not drawn
    assert windows.drawn == 3 and torch.equal(again["aligned"], cache["aligned"][:2])
    build_cache(model, windows, 4, np.random.default_rng(0), path)  # more than it holds: built anew
    assert windows.drawn == 7 and len(torch.load(path)["truth"]) == 4


def test_cached_steps_teach_the_stages_what_the_outer_frames_know():
    """Windows whose true middle frame has the colour of the aligned I0, where film's frame is grey: the residual
    heads start at zero (the model is film), and their gradients must reach the output through the ConvLSTM, which
    alone reads I0, for the loss to fall."""
    torch.manual_seed(0)
    model = ConvLSTMNet(PRESETS["convlstm-tiny"]).eval()
    aligned = torch.rand(16, 4, 3, 1, 1).expand(-1, -1, -1, 32, 32).half().contiguous()  # a colour per frame
    cache = {"aligned": aligned, "base": torch.full((16, 3, 32, 32), 0.5).half(), "truth": aligned[:, 0].clone()}
    with torch.no_grad():
        before = float(residual_loss(model, {k: v.float() for k, v in cache.items()}))
        start = held_out_scores(model, cache)
    assert start["film"] == start["model"]  # zero heads: nothing added
    losses = train_residual(model, cache, CacheConfig(steps=80, batch=8, lr=1e-2))
    with torch.no_grad():
        after = float(residual_loss(model, {k: v.float() for k, v in cache.items()}))
    assert len(losses) == 80 and after < before - 0.3  # the log of the error: more than 1.3 dB
    assert held_out_scores(model, cache)["model"] > start["model"] + 2


def test_cli_residual_run_trains_exports_and_refuses_what_it_does_not_apply_to(tmp_path: Path):
    data_dir, out, weights = cached_stage_run(tmp_path, ["--model", "convlstm", "--preset", "convlstm-tiny",
                                                         "--residual-cache", "10"], steps=12)
    assert (out / "residual_cache.pt").exists() and (out / "residual_opt.pt").exists()
    model, _ = load_model(weights, expect="convlstm")
    heads = [*model.synthesis.head.parameters(), *model.refinement.head.parameters()]
    assert any(float(p.detach().abs().max()) > 0 for p in heads)  # the exported stages moved from zero
    assert all(float(p.detach().abs().max()) == 0 for p in model.gate.head.parameters())  # the gate stayed shut
    held = json.loads((out / "residual_held_out.json").read_text())  # one window of ten, never trained on
    assert held["windows"] == 1 and {"film", "model"} <= set(held)
    for args, said in ((["--residual-cache", "6"], "convlstm"),
                       (["--model", "convlstm", "--gate", "6", "--residual-cache", "6"], "separate runs")):
        bad = CliRunner().invoke(app, ["train", "--data", str(data_dir), *args, "--out", str(tmp_path / "f")])
        assert bad.exit_code != 0 and said in bad.output and "Traceback" not in bad.output
