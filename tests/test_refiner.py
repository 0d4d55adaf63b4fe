"""film's learned motion refiner (``framefill.models.refiner``): it starts as film, its corrections move where each
input is read, its cost volume finds an offset, the privileged motion is the truth's, and it survives a save and
load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from framefill.checkpoint import save_model
from framefill.models import load_model
from framefill.models.film import FilmConfig, build_film
from framefill.models.layers import grey, warp
from framefill.models.refiner import cost_volume, privileged_motion, refiner_input
from framefill.models.time_flow import time_motion


def _texture(h: int = 64, w: int = 64, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 4, w + 4), 5, stride=1)  # smooth, textured


def test_with_refiner_starts_as_film_and_its_corrections_move_the_output():
    model = build_film("film-tiny").eval()
    refined = model.with_refiner(4).eval()
    assert refined.config.refiner_filters == 4 and model.refiner is None
    assert refined.with_refiner(8) is refined  # one that has a refiner keeps it
    x0 = _texture()
    x1 = torch.roll(x0, (0, 3), (2, 3))
    with torch.no_grad():
        ref = model(x0, x1)
        assert torch.equal(refined(x0, x1), ref)
        refined.refiner.head.bias.copy_(torch.tensor([2.0, 0.0, 2.0, 0.0]))  # both inputs read 2 px further right
        moved = refined(x0, x1)
    assert (moved - ref).abs().mean() > 1e-3


def test_the_cost_volume_is_lowest_at_the_offset_that_matches():
    """A picture and the same picture 2 px to the right: read at (motion + d), the source matches the other where
    d is the shift, and nowhere else."""
    src = _texture()[:, :1]
    other = torch.roll(src, -2, dims=3)  # other(x) = src(x + 2)
    cost = cost_volume(src, torch.zeros(1, 2, 64, 64), other, 5)  # offsets (dy, dx) row-major from (-2, -2)
    inner = cost[..., 8:-8, 8:-8].mean(dim=(-2, -1))[0]
    assert inner.argmin().item() == 2 * 5 + 4  # dy = 0, dx = +2
    assert inner[2 * 5 + 4] < 1e-5 < inner.sort().values[1]


def test_the_refiners_input_does_not_depend_on_contrast():
    """Line art and a dim photo look alike to the refiner: the same pictures at half the contrast give it nearly the
    same input (images, disagreement and costs are divided by the local contrast), where its raw grey levels would
    differ twofold."""
    model = build_film("film-tiny").with_refiner(4).eval()
    torch.manual_seed(2)
    x0 = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), scale_factor=8.0)  # blocks: contrast at 1/4 size
    x1 = torch.roll(x0, (1, 3), (2, 3))
    inputs = []
    for k in (1.0, 0.5):
        a, b = (0.5 + k * (x - 0.5) for x in (x0, x1))
        with torch.no_grad():
            _, _, gp, flows = model.flow_pyramids(a, b)
            g0, g1 = [g[:1] for g in gp], [g[1:] for g in gp]
            t = torch.full((1, 1, 1, 1), 0.5)
            v, trust = time_motion(g0, g1, flows, t, model.config)
            inputs.append(refiner_input(v, trust, g0, g1, flows, t, model.config.time_finest)[0][..., 3:-3, 3:-3])
    full, dim = inputs
    cost = slice(10, None)
    assert (full - dim)[:, :5].abs().mean() < 0.15 * full[:, :5].abs().mean()
    assert (full - dim)[:, cost].abs().mean() < 0.15 * full[:, cost].abs().mean()


def test_privileged_motion_points_where_the_truth_is_in_each_input():
    """A texture moving 4 px right per frame: the truth's pixels sit 4 px left in frame 0 and 4 px right in frame 1
    (1 px of the refiner's quarter-resolution level each way)."""
    model = build_film("film-tiny").eval()
    wide = _texture(64, 96)
    frames = [wide[..., 16 + s:80 + s].flip(-1) for s in (-4, 0, 4)]  # (flipped: the texture moves right)
    x0, mid, x1 = frames[0], frames[1], frames[2]
    u = privileged_motion(model, x0, x1, mid)
    assert u.shape == (1, 4, 16, 16)
    inner = u[..., 4:-4, 4:-4].mean(dim=(-2, -1))[0]
    assert torch.allclose(inner, torch.tensor([-1.0, 0.0, 1.0, 0.0]), atol=0.25), inner


def test_the_motion_the_refiner_corrects_is_where_film_reads():
    """The motion the refiner corrects (the forward pass's aux) is where film reads each input: reading the inputs'
    quarter-resolution grey images along it gives two images that agree far better than the inputs do."""
    model = build_film("film-tiny").with_refiner(4).eval()
    x0 = _texture()
    x1 = torch.roll(x0, (2, 4), (2, 3))
    with torch.no_grad():
        _, aux = model(x0, x1, return_aux=True)
    m, delta = aux["refined"]["motion"], aux["refined"]["delta"]
    assert m.shape == delta.shape == (1, 4, 16, 16) and not delta.any()
    g = grey(aux["pyramid"][2])
    reads = warp(g, torch.cat([m[:, :2], m[:, 2:]]))
    inner = (reads[0] - reads[1])[..., 4:-4, 4:-4].abs().mean()
    assert inner < 0.5 * (g[0] - g[1])[..., 4:-4, 4:-4].abs().mean()


@pytest.mark.parametrize("field, head", [("refiner_filters", "refiner.head.weight"),
                                         ("lk_weight_filters", "flow.weights.head.weight"),  # film_parts.LKWeights
                                         ("sharpen_filters", "sharpener.head.weight")])  # models.sharpen
def test_learned_stages_save_and_load(tmp_path: Path, field: str, head: str):
    needs = {"selector_filters": 4} if field == "sharpen_filters" else {}  # the sharpener comes after a selector
    model = build_film("film-tiny", **{field: 4}, **needs).eval()
    with torch.no_grad():
        model.get_parameter(head).normal_(0, 0.3)
    path = tmp_path / "ref.safetensors"
    save_model(path, model, architecture="film")
    loaded, _ = load_model(path)
    x0 = _texture()
    x1 = torch.roll(x0, (1, 2), (2, 3))
    with torch.no_grad():
        assert torch.equal(loaded(x0, x1), model(x0, x1))


def test_refiner_needs_the_matching_at_time_t():
    with pytest.raises(ValueError, match="time_levels"):
        FilmConfig(refiner_filters=4, time_levels=0)
