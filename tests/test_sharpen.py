"""film's sharpener (``framefill.models.sharpen``): a fresh one leaves the model's frame as it was, its gains move
the two warped frames toward their bicubic reads or a blur and nothing else, cached steps teach it where a blur is
right, and ``framefill train --sharpen`` trains it from the selector's cache on weights with a selector, exports it
and refuses to run without them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cached_stage_run, time_pairs_rows
from test_selector_cache import Textures
from typer.testing import CliRunner

from framefill.checkpoint import save_model
from framefill.cli import app
from framefill.models import load_model
from framefill.models.film import FilmConfig, build_film
from framefill.models.layers import box_filter, warp
from framefill.models.sharpen import SHARP_REACH, Sharpener, sharpened
from framefill.train.loop import TrainConfig
from framefill.train.selector_cache import SelectorCacheConfig, build_cache, held_out_psnr, train_selector


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x0 = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 96, generator=g), 3, 1, 1)
    return x0, torch.roll(x0, (1, 2), (2, 3))


def test_a_fresh_sharpener_keeps_the_frame_and_a_trained_one_moves_it():
    torch.manual_seed(0)
    plain = build_film("film-tiny", selector_filters=4).eval()
    model = plain.with_sharpener(4).eval()
    x0, x1 = _pair()
    with torch.no_grad():
        before = plain(x0, x1)
        assert torch.equal(model(x0, x1), before)
        model.sharpener.head.bias.copy_(torch.tensor([5.0, 5.0, -5.0, -5.0]))  # toward bicubic, no blur
        assert (model(x0, x1) - before).abs().max() > 1e-3
    with pytest.raises(ValueError, match="selector"):
        FilmConfig(sharpen_filters=4)


def test_gains_are_bounded_and_move_only_the_two_warped_frames():
    net = Sharpener(4, inputs=3)
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([100.0, -100.0, 100.0, -100.0]))
    gains = net(torch.zeros(1, net.inputs, 8, 8))
    assert torch.allclose(gains[:, 0], torch.tensor(SHARP_REACH))
    assert torch.allclose(gains[:, 1], torch.tensor(-SHARP_REACH))
    assert torch.allclose(gains[:, 2], torch.tensor(1.0)) and torch.equal(gains[:, 3], torch.zeros(1, 8, 8))
    r0, r1, blend = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    b0, b1 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    only_blur = torch.zeros(1, 4, 8, 8)
    only_blur[:, 2] = 1.0
    m0, m1, mb = sharpened((r0, r1, blend), (b0, b1), only_blur)
    assert torch.allclose(m0, box_filter(r0, 3)) and torch.equal(m1, r1) and mb is blend


def test_bicubic_reads_equal_bilinear_ones_at_whole_pixels():
    img = torch.rand(1, 3, 20, 24)
    flow = torch.zeros(1, 2, 20, 24)
    flow[:, 0] = 2.0
    flow[:, 1] = -1.0
    inner = (..., slice(3, -3), slice(3, -3))
    assert torch.allclose(warp(img, flow, "bicubic")[inner], warp(img, flow)[inner], atol=1e-5)
    flow[:, 0] = 2.5  # between pixels they differ: bilinear averages, bicubic keeps more of the detail
    assert (warp(img, flow, "bicubic") - warp(img, flow))[inner].abs().mean() > 1e-3


def test_cached_steps_teach_the_sharpener_where_a_blur_is_right():
    torch.manual_seed(0)
    model = build_film("film-tiny", selector_filters=4).with_sharpener(4).eval()
    cache = build_cache(model, Textures(), 8, np.random.default_rng(0))
    cache = {k: v.clone() for k, v in cache.items()}
    assert cache["bicubic"].shape == (8, 2, 3, 32, 32) and cache["sharpen"].shape[1] == model.sharpener.inputs
    cache["truth"] = box_filter(cache["candidates"][:, 1].float(), 3).half()  # warped frame 1, blurred, everywhere
    plain = held_out_psnr(model, cache, rule=True, stage="sharpener")
    assert held_out_psnr(model, cache) == plain  # a fresh sharpener changes nothing
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = train_selector(model, cache, SelectorCacheConfig(steps=60, batch=4, lr=1e-2), TrainConfig(sharpen=4))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert held_out_psnr(model, cache) > plain + 0.3
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if not k.startswith("sharpener."))


def test_cli_sharpen_run_trains_exports_and_needs_weights_with_a_selector(tmp_path: Path):
    start = tmp_path / "sel.safetensors"
    save_model(start, build_film("film-tiny", selector_filters=4).eval(), architecture="film")
    data_dir, out, weights = cached_stage_run(tmp_path, ["--preset", "film-tiny", "--finetune", str(start),
                                                         "--sharpen", "4", "--selector-cache", "10"], steps=12)
    model, _ = load_model(weights, expect="film")
    assert model.config.sharpen_filters == 4
    assert float(model.sharpener.head.weight.detach().abs().max()) > 0  # moved from zero
    held = json.loads((out / "sharpener_held_out.json").read_text())
    assert held["crops"] == 1 and {"rule", "start", "trained"} <= set(held)
    for args in (["--sharpen", "4", "--selector-cache", "6"],  # no weights to start from
                 ["--sharpen", "4", "--finetune", str(start)]):  # no cache
        bad = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--preset", "film-tiny", *args,
                                       "--out", str(tmp_path / "f")])
        assert bad.exit_code != 0 and "--sharpen" in bad.output and "Traceback" not in bad.output


def test_time_pairs_scores_fixed_gains_as_their_own_rows(tmp_path: Path):
    weights = tmp_path / "sel.safetensors"
    save_model(weights, build_film("film-tiny", selector_filters=4).eval(), architecture="film")
    plain = time_pairs_rows(tmp_path, weights)[0]
    blurred = time_pairs_rows(tmp_path, weights, "--sharpen-gains", "0,0,0.9,0.9")[0]
    assert blurred["peer"] == "framefill_gains_0_0_0.9_0.9" and blurred["psnr"] != plain["psnr"]
    assert time_pairs_rows(tmp_path, weights, "--sharpen-gains", "0,0,0,0")[0]["psnr"] == plain["psnr"]  # plain reads
    bad = time_pairs_rows(tmp_path, weights, "--sharpen-gains", "2,0,0,0", check=False)
    assert "--sharpen-gains" in bad and "Traceback" not in bad


def test_adapt_and_the_selectors_cached_steps_see_the_frames_a_sharpener_makes():
    from framefill.adapt import evidence, stack
    from framefill.train.loop import image_terms, selector_terms

    torch.manual_seed(0)
    model = build_film("film-tiny", selector_filters=4).with_sharpener(4).eval()
    with torch.no_grad():
        model.sharpener.head.bias.copy_(torch.tensor([3.0, 3.0, 0.5, 0.5]))
    x0, x1 = _pair()
    with torch.no_grad():
        sample = (torch.stack([x0[0], x1[0], x0[0]]).permute(0, 2, 3, 1) * 255).round().byte().numpy()
        x = torch.from_numpy(sample).permute(0, 3, 1, 2).float() / 255  # the sample as adapt reads it
        made = model(x[None, 0], x[None, 1])
        ev, _ = stack(evidence(model, [sample], torch.device("cpu")), torch.device("cpu"))
        offset = model.selector(ev["inputs"]).float()
        assert torch.allclose(model.compose(ev, offset)[0], made, atol=1e-5)  # adapt: sharpened candidates cached
        full = model.selector_evidence(x[None, 0], x[None, 1], torch.full((1, 1, 1, 1), 0.5))
        cfg = TrainConfig(selector=4, w_census=0.0, w_lap=0.0)
        floor = sum(image_terms(made, made, cfg).values())  # the loss of the frame itself (robust L1's epsilon)
        assert torch.allclose(selector_terms(model, full, made, cfg)["total"], floor, atol=1e-5)
        without = {k: v for k, v in full.items() if k != "sharpen"}  # the unsharpened frame is further from it
        assert selector_terms(model, without, made, cfg)["total"] > floor + 1e-4


def test_export_with_a_film_gives_convlstm_weights_the_sharpened_film_and_keeps_their_own_stages(tmp_path: Path):
    import subprocess
    import sys

    from framefill.models import build_model

    torch.manual_seed(0)
    clstm = build_model("convlstm", "convlstm-tiny").eval()
    with torch.no_grad():
        clstm.gate.head.weight.normal_(0, 0.1)  # a trained gate, to be kept
    film = build_film("film-tiny", selector_filters=4).with_sharpener(4).eval()
    with torch.no_grad():
        film.sharpener.head.bias.fill_(0.5)
    old, new, filmw = tmp_path / "c.safetensors", tmp_path / "c2.safetensors", tmp_path / "f.safetensors"
    save_model(old, clstm, architecture="convlstm", extra={"training": {"steps": 7}})
    save_model(filmw, film, architecture="film")
    tool = Path(__file__).resolve().parents[1] / "tools" / "export_checkpoint.py"
    subprocess.run([sys.executable, str(tool), str(old), str(new), "--film", str(filmw)], check=True,
                   capture_output=True)
    swapped, _ = load_model(new, expect="convlstm")
    assert swapped.config.film == film.config and json.loads(load_model(new)[1]["training"])["steps"] == 7
    state, before = swapped.state_dict(), clstm.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in before.items() if not k.startswith("film."))
    assert all(torch.equal(v, state["film." + k]) for k, v in film.state_dict().items())
