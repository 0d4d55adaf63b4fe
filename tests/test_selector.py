"""The learned selector between warped frame 0, warped frame 1 and the blend (``film_parts.Selector``): it starts as
the parameter-free rule, its weights really choose, it trains alone, and it survives a save and load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from framefill.checkpoint import save_model
from framefill.models import load_model
from framefill.models.film import Film, build_film
from framefill.models.film_parts import Selector, selector_inputs
from framefill.train.losses import choice_loss


def _trained_looking(model: Film) -> Film:
    torch.manual_seed(0)
    for p in model.fusion.parameters():  # a fusion whose mask and residual are not zero, so the tests mean something
        p.data.normal_(0, 0.1)
    return model.eval()


def _pair(h: int = 32, w: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x0 = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 2, w + 2), 3, stride=1)  # a smooth texture
    return x0, torch.roll(x0, (1, 2), (2, 3))


def test_with_selector_starts_as_the_rule_it_refines():
    model = _trained_looking(build_film("film-tiny"))
    chosen = model.with_selector(4).eval()
    assert chosen.config.selector_filters == 4 and model.selector is None
    x0, x1 = _pair()
    with torch.no_grad():
        out, aux = chosen(x0, x1, return_aux=True)
        ref, ref_aux = model(x0, x1, return_aux=True)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(aux["fallback"], ref_aux["fallback"], atol=1e-5)  # the blend's weight is the rule's
    assert chosen.with_selector(8) is chosen  # one that has a selector keeps it


@pytest.mark.parametrize("pick", [0, 1])
def test_the_selectors_logits_choose_the_candidate(pick: int):
    """A strong bias toward one candidate makes the output that candidate (plus the fusion's residual). (The blend
    cannot be forced: its raise is capped, the next test.)"""
    model = _trained_looking(build_film("film-tiny")).with_selector(4).eval()
    with torch.no_grad():
        model.selector.head.bias.fill_(-30.0)  # the others pushed down (the blend can only lose weight)
        model.selector.head.bias[pick] = 30.0
        x0, x1 = _pair()
        out, aux = model(x0, x1, return_aux=True)
        head = model._base(x0, x1, torch.full((1, 1, 1, 1), 0.5))[0]
    candidate = [aux["warped0"], aux["warped1"]][pick]
    assert torch.allclose(out, (candidate + head[:, 1:4]).clamp(0, 1), atol=1e-4)


def test_selector_inputs_and_output_shapes():
    model = build_film("film-tiny", selector_filters=4).eval()
    x0, x1 = _pair(64, 96)
    with torch.no_grad():
        out, aux = model(x0, x1, return_aux=True)
        x = selector_inputs(model.config, x0, x1, aux["warped0"], aux["warped1"], (x0 + x1) / 2,
                            torch.zeros(1, 1, 64, 96), aux["flows"][1], 0.5 * aux["flows"][1])
    assert out.shape == x0.shape
    assert x.shape == (1, Selector.INPUTS, 32, 48) and torch.isfinite(x).all()
    assert model.selector(x).shape == (1, 3, 32, 48)
    assert aux["fallback"].shape == (1, 1, 64, 96)


def test_selector_needs_the_fallback_it_refines():
    with pytest.raises(ValueError, match="fallback"):
        build_film("film-tiny", selector_filters=4, fallback_window=0)


def test_selector_weights_save_and_load(tmp_path: Path):
    model = build_film("film-tiny", selector_filters=4).eval()
    with torch.no_grad():
        model.selector.head.weight.normal_(0, 0.1)
    path = tmp_path / "sel.safetensors"
    save_model(path, model, architecture="film")
    loaded, _ = load_model(path)
    x0, x1 = _pair()
    with torch.no_grad():
        assert torch.equal(loaded(x0, x1), model(x0, x1))


def test_choice_loss_rewards_the_candidate_closest_to_the_truth():
    """Per pixel, the cross-entropy points at whichever candidate matches the truth there; where the candidates
    agree the pixel carries no weight."""
    torch.manual_seed(2)
    truth = torch.rand(1, 3, 16, 16)
    wrong = torch.rand(1, 3, 16, 16)
    left = torch.cat([truth[..., :8], wrong[..., 8:]], dim=-1)  # right on the left half
    right = torch.cat([wrong[..., :8], truth[..., 8:]], dim=-1)  # right on the right half
    pick = torch.zeros(1, 3, 16, 16)
    pick[:, 0, :, :8] = pick[:, 1, :, 8:] = 10.0  # the correct choice everywhere
    swapped = pick[:, [1, 0, 2]]  # the wrong one everywhere
    candidates = [left, right, (left + right) / 2]
    assert choice_loss(pick, candidates, truth) < 0.01 < 5 < choice_loss(swapped, candidates, truth)
    same = [truth, truth, truth]
    assert choice_loss(swapped, same, truth) == 0  # nothing to choose: no weight anywhere



def test_cached_evidence_and_compose_give_the_models_output():
    """A selector step on cached evidence (adapt, selector_terms) trains exactly the output the model produces."""
    model = _trained_looking(build_film("film-tiny")).with_selector(4).eval()
    with torch.no_grad():
        model.selector.head.weight.normal_(0, 0.1)  # a selector that moves the rule
        x0, x1 = _pair()
        t = torch.full((1, 1, 1, 1), 0.5)
        ev = model.selector_evidence(x0, x1, t)
        offset = model.selector(ev["inputs"])
        out, choice = model.compose(ev, offset)
        ref, aux = model(x0, x1, return_aux=True)
    assert torch.allclose(out, ref, atol=1e-6) and torch.equal(choice, aux["choice"])
    assert offset.abs().max() > 0.01  # the check means something: the selector did move the rule


def test_the_selector_raises_the_blend_only_a_little_above_the_rule():
    """However the offsets move (the blend's raised, or both warped frames lowered, which a softmax reads the same
    way), the blend's weight stays within e**BLEND_RAISE of the rule's: the selector can sharpen (warped frames
    instead of the blend) but never ghost what the rule warps. A raise beyond the cap changes nothing."""
    model = _trained_looking(build_film("film-tiny")).with_selector(4).eval()
    with torch.no_grad():
        x0, x1 = _pair()
        ev = model.selector_evidence(x0, x1, torch.full((1, 1, 1, 1), 0.5))
        zero = torch.zeros(1, 3, *ev["inputs"].shape[-2:])
        rule_blend = torch.softmax(model.compose(ev, zero)[1], 1)[:, 2]
        for k in range(2):  # the blend raised; both warped frames lowered
            push = zero.clone()
            if k == 0:
                push[:, 2] = 30.0
            else:
                push[:, :2] = -30.0
            blend = torch.softmax(model.compose(ev, push)[1], 1)[:, 2]
            assert (blend <= rule_blend * math.exp(Film.BLEND_RAISE) + 1e-6).all()
            assert (blend > 1.5 * rule_blend).any()  # it did rise, up to the cap
        up, at_cap = zero.clone(), zero.clone()
        up[:, 2], at_cap[:, 2] = 30.0, Film.BLEND_RAISE
        assert torch.equal(model.compose(ev, up)[0], model.compose(ev, at_cap)[0])
        down = zero.clone()
        down[:, 2] = -30.0
        assert not torch.allclose(model.compose(ev, down)[0], model.compose(ev, zero)[0])


def test_widening_the_selector_to_the_inputs_keeps_its_output():
    """A trained three-way selector widened to choose the inputs as they are (``train --unwarped``) starts as it was:
    its first three offsets are unchanged and the inputs get no say until trained."""
    model = _trained_looking(build_film("film-tiny")).with_selector(4).eval()
    with torch.no_grad():
        model.selector.head.weight.normal_(0, 0.1)
        model.selector.head.bias.copy_(torch.tensor([-3.0, -2.0, -4.0]))  # offsets far below zero on every choice
    wide = model.with_selector(4, unwarped=True).eval()
    assert wide.config.selector_unwarped and wide.selector.choices == 5 and model.selector.choices == 3
    assert wide.with_selector(4, unwarped=True) is wide
    x0, x1 = _pair()
    with torch.no_grad():
        out, aux = wide(x0, x1, return_aux=True)
        ref = model(x0, x1)
    assert torch.allclose(out, ref, atol=1e-4)
    assert len(aux["candidates"]) == 5 and aux["choice"].shape[1] == 5
    assert torch.softmax(aux["choice"], 1)[:, 3:].max() < 1e-4


@pytest.mark.parametrize("pick", [3, 4])
def test_a_widened_selector_can_choose_an_input_as_it_is(pick: int):
    model = _trained_looking(build_film("film-tiny")).with_selector(4, unwarped=True).eval()
    with torch.no_grad():
        model.selector.head.bias.fill_(-30.0)
        model.selector.head.bias[pick] = 30.0
        x0, x1 = _pair()
        out = model(x0, x1)
        head = model._base(x0, x1, torch.full((1, 1, 1, 1), 0.5))[0]
    assert torch.allclose(out, ([x0, x1][pick - 3] + head[:, 1:4]).clamp(0, 1), atol=1e-4)


def test_a_widened_selector_saves_and_loads(tmp_path: Path):
    model = build_film("film-tiny", selector_filters=4, selector_unwarped=True).eval()
    with torch.no_grad():
        model.selector.head.weight.normal_(0, 0.1)
    path = tmp_path / "wide.safetensors"
    save_model(path, model, architecture="film")
    loaded, _ = load_model(path)
    assert loaded.config.selector_unwarped
    x0, x1 = _pair()
    with torch.no_grad():
        assert torch.equal(loaded(x0, x1), model(x0, x1))


def test_unwarped_choices_need_a_selector():
    with pytest.raises(ValueError, match="selector"):
        build_film("film-tiny", selector_unwarped=True)
