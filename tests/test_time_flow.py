"""The symmetric motion at time t (``framefill.models.time_flow``): it finds the motion from nothing, beats FILM's
approximation where the motion varies across the picture, keeps FILM's approximation where the flows fail the
forward-backward check, and is off with ``time_levels=0``."""

from __future__ import annotations

import pytest
import torch

from framefill.models.film import FilmConfig, build_film
from framefill.models.layers import grey, image_pyramid, warp
from framefill.models.time_flow import symmetric_motion, time_warps


def _texture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random RGB texture, ``(1, 3, h, w)``."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // 8, w // 8, generator=gen)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _zoom(img: torch.Tensor, scale: float) -> torch.Tensor:
    """``img`` magnified by ``scale`` about its centre (bilinear)."""
    h, w = img.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    flow = torch.stack([(xs - cx) * (1 / scale - 1), (ys - cy) * (1 / scale - 1)])[None]
    return warp(img, flow)


def _pyramids(a: torch.Tensor, b: torch.Tensor, levels: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [grey(p) for p in image_pyramid(a, levels)], [grey(p) for p in image_pyramid(b, levels)]


def test_symmetric_motion_finds_a_shift_from_zero_flows():
    cfg = FilmConfig()
    big = _texture(160, 192)
    a, b = big[..., 16:144, 16:176], big[..., 16:144, 13:173]  # b[y, x] = a[y, x - 3]: the content moves 3 px right
    g0, g1 = _pyramids(a, b, cfg.time_levels)
    zeros = [torch.zeros(2, 2, *g.shape[-2:]) for g in g0]
    t = torch.full((1, 1, 1, 1), 0.5)
    v = symmetric_motion(g0, g1, zeros, t, cfg)  # at level time_finest (half resolution)
    scale = 2**cfg.time_finest
    inner = v[0, :, 8:-8, 8:-8].mean(dim=(1, 2)) * scale
    assert inner[0].item() == pytest.approx(3.0, abs=0.25)
    assert abs(inner[1].item()) < 0.25


def test_symmetric_motion_beats_films_approximation_on_a_zoom():
    # A zoom's motion changes across the picture, so a flow read on an input's grid is wrong on the grid of the
    # frame at time t by about t * (its change over the motion): the symmetric match is not.
    a = _texture(128, 128, seed=3)
    b, truth = _zoom(a, 1.12), _zoom(a, 1.06)
    inner = (..., slice(16, -16), slice(16, -16))
    errors = {}
    for levels in (0, 2):
        model = build_film("film-s", time_levels=levels).eval()
        with torch.no_grad():
            errors[levels] = (model(a, b) - truth)[inner].abs().mean().item()
    assert errors[2] < 0.8 * errors[0], errors


def _untrusted(cfg: FilmConfig) -> tuple:
    """``time_warps``' arguments for two unrelated textures whose flows both point 6 px to the right: following one
    and then the other ends 12 px away, so no pixel is trusted."""
    a, b = _texture(64, 64, seed=1), _texture(64, 64, seed=2)
    g0, g1 = _pyramids(a, b, cfg.time_levels)
    approx0, approx1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    flows = [torch.full((2, 2, *g.shape[-2:]), 6.0 / 2**j) for j, g in enumerate(g0)]
    return a, b, approx0, approx1, g0, g1, flows, torch.full((1, 1, 1, 1), 0.5), cfg


def test_time_warps_keep_films_approximation_where_the_flows_disagree():
    cfg = FilmConfig()
    args = _untrusted(cfg)
    a, approx0, approx1, g0, flows, t = args[0], args[2], args[3], args[4], args[6], args[7]
    w0, w1 = time_warps(*args)
    assert torch.allclose(w0, approx0, atol=1e-3) and torch.allclose(w1, approx1, atol=1e-3)
    # Consistent flows (zero) on identical inputs: the symmetric warps, which are the inputs themselves.
    zeros = [torch.zeros_like(f) for f in flows]
    w0, w1 = time_warps(a, a, approx0, approx1, g0, g0, zeros, t, cfg)
    assert torch.allclose(w0, a, atol=1e-5) and torch.allclose(w1, a, atol=1e-5)


def test_time_levels_zero_is_films_approximation():
    model = build_film("film-tiny", time_levels=0).eval()
    a, b = _texture(32, 32, seed=4), _texture(32, 32, seed=5)
    with torch.no_grad():
        _, aux = model(a, b, return_aux=True)
    flow_10, flow_01 = aux["flows"][0].chunk(2)
    assert torch.allclose(aux["warped0"], warp(a, 0.5 * flow_10), atol=1e-6)
    assert torch.allclose(aux["warped1"], warp(b, 0.5 * flow_01), atol=1e-6)


def test_a_fixed_trust_picks_films_approximation_or_the_symmetric_motion():
    # The flows disagree everywhere (no pixel trusted): the rule keeps FILM's approximation, trust 0 too, trust 1
    # takes the symmetric warps instead (tools/time_pairs.py --trust measures the three).
    args = _untrusted(FilmConfig())
    approx0, approx1 = args[2], args[3]
    rule = time_warps(*args)
    none = time_warps(*args, trust_fixed=0.0)
    every = time_warps(*args, trust_fixed=1.0)
    assert torch.allclose(rule[0], approx0, atol=1e-3) and torch.equal(none[0], approx0)
    assert (every[0] - approx0).abs().mean() > 0.1 and (every[1] - approx1).abs().mean() > 0.1
    # Through the model: trust 0 everywhere is the model without the matching at t.
    x, y = _texture(32, 32, seed=4), _texture(32, 32, seed=5)
    on, off = build_film("film-tiny").eval(), build_film("film-tiny", time_levels=0).eval()
    off.load_state_dict(on.state_dict())
    on.trust_fixed = 0.0
    with torch.no_grad():
        assert torch.allclose(on(x, y), off(x, y), atol=1e-6)
        on.trust_fixed = None
        assert not torch.allclose(on(x, y), off(x, y), atol=1e-4)


def test_time_levels_are_checked():
    FilmConfig(time_levels=0, time_finest=3)  # off: time_finest does not matter
    with pytest.raises(ValueError, match="time_levels"):
        FilmConfig(time_levels=2, time_finest=2)
    with pytest.raises(ValueError, match="time_levels"):
        FilmConfig(time_levels=9)
