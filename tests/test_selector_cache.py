"""Training film's selector alone from a cache of what it chooses from (``train --selector N --selector-cache K``):
the cache holds the model's own evidence and is reused, cached steps teach the selector the right candidate, and
the CLI runs it end to end, exports it and refuses it without a selector, and a run stopped early (a signal,
--max-minutes) keeps the selector it trained so far."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cached_stage_run
from typer.testing import CliRunner

from framefill.cli import app
from framefill.models import load_model
from framefill.models.film import build_film
from framefill.train.loop import TrainConfig
from framefill.train.selector_cache import (
    SelectorCacheConfig,
    build_cache,
    held_out_psnr,
    run_selector_cache,
    train_selector,
)


class Textures:
    """A stand-in training source: smooth random textures moved by 0 or 2 pixels each way, the truth halfway."""

    def __init__(self, size: int = 32) -> None:
        self.size, self.built = size, 0

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        return int(rng.integers(1 << 30)), 2 * int(rng.integers(-1, 2)), 2 * int(rng.integers(-1, 2))

    def build(self, d: tuple[int, int, int]) -> tuple[torch.Tensor, float]:
        self.built += 1
        seed, dy, dx = d
        g = torch.Generator().manual_seed(seed)
        big = torch.nn.functional.avg_pool2d(torch.rand(1, 3, self.size + 8, self.size + 8, generator=g), 3, 1, 1)
        def crop(oy: int, ox: int) -> torch.Tensor:
            return big[0, :, 4 + oy:4 + oy + self.size, 4 + ox:4 + ox + self.size]
        return torch.stack([crop(0, 0), crop(dy, dx), crop(dy // 2, dx // 2)]), 0.5


def test_cache_holds_the_models_evidence_and_is_reused(tmp_path: Path):
    model = build_film("film-tiny", selector_filters=4).eval()
    source, path = Textures(), tmp_path / "selector_cache.pt"
    cache = build_cache(model, source, 5, np.random.default_rng(0), path, batch=2)
    assert source.built == 5 and path.exists()
    assert cache["candidates"].shape == (5, 3, 3, 32, 32) and cache["inputs"].shape[:2] == (5, model.selector.inputs)
    x, _ = source.build(source.draw(np.random.default_rng(0)))  # the first crop, drawn again
    with torch.no_grad():
        ev = model.selector_evidence(x[None, 0], x[None, 1], torch.full((1, 1, 1, 1), 0.5))
    assert torch.allclose(cache["rule"][0].float(), ev["rule"][0], atol=1e-2)
    assert torch.allclose(cache["candidates"][0, 0].float(), ev["candidates"][0][0], atol=2e-3)
    assert torch.equal(cache["truth"][0], x[2].half())
    again = build_cache(model, source, 4, np.random.default_rng(1), path)  # fewer than cached: read, not built
    assert source.built == 6 and torch.equal(again["truth"], cache["truth"][:4])


def test_cached_steps_teach_the_selector_the_right_candidate():
    torch.manual_seed(0)
    model = build_film("film-tiny", selector_filters=4).eval()
    cache = build_cache(model, Textures(), 8, np.random.default_rng(0))
    cache = {k: v.clone() for k, v in cache.items()}
    cache["truth"] = cache["candidates"][:, 1].clone()  # warped frame 1 is right everywhere: the rule mixes in others
    rule = held_out_psnr(model, cache, rule=True)
    assert held_out_psnr(model, cache) == rule  # a fresh selector is the rule
    losses = train_selector(model, cache, SelectorCacheConfig(steps=60, batch=4, lr=1e-2),
                            TrainConfig(selector=4, w_choice=0.05))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert held_out_psnr(model, cache) > rule + 1.0


def test_cli_cached_selector_run_trains_exports_and_needs_a_selector(tmp_path: Path):
    data_dir, out, weights = cached_stage_run(tmp_path, ["--preset", "film-tiny", "--selector", "4",
                                                         "--selector-cache", "10"], steps=12)
    assert (out / "selector_cache.pt").exists() and (out / "last.pt").exists()
    model, _ = load_model(weights, expect="film")
    assert any(float(p.detach().abs().max()) > 0 for p in model.selector.head.parameters())  # moved from zero
    held = json.loads((out / "selector_held_out.json").read_text())  # one crop of ten, never trained on
    assert held["crops"] == 1 and {"rule", "start", "trained"} <= set(held)
    bad = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--selector-cache", "6",
                                   "--out", str(tmp_path / "f")])
    assert bad.exit_code != 0 and "--selector" in bad.output and "Traceback" not in bad.output


class Trainer:
    """What ``run_selector_cache`` uses of ``train.loop.Trainer``: a tiny film with a selector, its EMA copy, the
    source of crops, the run's folder and a checkpoint that records the step it was written at."""

    def __init__(self, out: Path) -> None:
        torch.manual_seed(0)
        self.model = build_film("film-tiny", selector_filters=4).eval()
        self.ema = copy.deepcopy(self.model)
        self.dataset, self.rng, self.out = Textures(), np.random.default_rng(0), out
        self.cfg, self.step, self.saved = TrainConfig(selector=4, w_choice=0.05), 0, []

    def save(self) -> None:
        self.saved.append(self.step)


def assert_ema_holds_the_trained_selector(trainer: Trainer) -> None:
    trained, ema = trainer.model.selector.state_dict(), trainer.ema.selector.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in trained.items())
    assert float(trainer.ema.selector.head.weight.detach().abs().max()) > 0  # moved from its zero start


def test_a_stopped_cached_run_keeps_the_selector_it_trained_and_goes_on_from_there(tmp_path: Path):
    trainer = Trainer(tmp_path)

    def interrupted(step: int, loss: float) -> None:  # Ctrl-C or SIGTERM (a KeyboardInterrupt) after step 3
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_selector_cache(trainer, SelectorCacheConfig(samples=10, steps=8, batch=4, lr=1e-2), interrupted)
    assert trainer.step == 3 and trainer.saved == [3]
    assert all(int(v["step"]) == 3 for v in torch.load(tmp_path / "selector_opt.pt")["state"].values())
    assert_ema_holds_the_trained_selector(trainer)
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3
    again = Trainer(tmp_path)  # the rerun, resumed from that checkpoint: it goes on from step 3 to the end
    again.model.load_state_dict(trainer.model.state_dict())
    again.step = 3
    losses = run_selector_cache(again, SelectorCacheConfig(samples=10, steps=8, batch=4, lr=1e-2))
    assert len(losses) == 5 and again.step == 8 and again.saved == [8]
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    # The optimiser went on too: AdamW's moments of the stopped run were read back, so its step count is the run's.
    assert all(int(v["step"]) == 8 for v in torch.load(tmp_path / "selector_opt.pt")["state"].values())


def test_a_cached_run_killed_outright_goes_on_from_its_last_periodic_checkpoint(tmp_path: Path, monkeypatch):
    from framefill.train import cached

    monkeypatch.setattr(cached, "CHECKPOINT_EVERY", 2)
    trainer = Trainer(tmp_path)

    on_disk = {}

    def killed(step: int, loss: float) -> None:  # SIGKILL or a machine that ends: nothing runs after step 5
        if step == 5:
            on_disk["opt"] = torch.load(tmp_path / "selector_opt.pt")  # what such a kill leaves there
            raise SystemExit(137)

    with pytest.raises(SystemExit):
        run_selector_cache(trainer, SelectorCacheConfig(samples=10, steps=8, batch=4, lr=1e-2), killed)
    assert trainer.saved == [2, 4] and trainer.step == 4  # not 5: the kill left no checkpoint of its own
    # The optimiser's moments on disk were those of the last checkpoint's step, not of an earlier one.
    assert all(int(v["step"]) == 4 for v in on_disk["opt"]["state"].values())
    assert float(trainer.ema.selector.head.weight.detach().abs().max()) > 0  # what --export writes: trained


def test_max_seconds_ends_the_cached_steps_and_still_scores_them(tmp_path: Path):
    trainer = Trainer(tmp_path)
    losses = run_selector_cache(trainer, SelectorCacheConfig(samples=10, steps=50, batch=4, lr=1e-2),
                                max_seconds=0.0)  # past the deadline from the first step on: one step
    assert len(losses) == 1 and trainer.step == 1 and trainer.saved == [1]
    assert_ema_holds_the_trained_selector(trainer)
    assert {"rule", "start", "trained"} <= set(json.loads((tmp_path / "selector_held_out.json").read_text()))


def test_an_optimiser_state_that_does_not_fit_the_stage_is_replaced_by_a_fresh_one(tmp_path: Path):
    from framefill.train.cached import train_cached

    state = tmp_path / "opt.pt"
    wide = [torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(2))]
    train_cached(wide, 4, 2, 2, 1e-2, 0, lambda idx, rng: sum(p.sum() for p in wide) ** 2 + wide[0].sum(),
                 state=state)
    narrow = [torch.nn.Parameter(torch.zeros(3))]  # another stage: two tensors' moments for one of another shape
    losses = train_cached(narrow, 4, 4, 2, 1e-2, 0, lambda idx, rng: (narrow[0] - 1).square().sum(), start=2,
                          state=state)
    assert len(losses) == 2 and all(int(v["step"]) == 2 for v in torch.load(state)["state"].values())
