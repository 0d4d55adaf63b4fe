"""``interp --adapt`` with ``--adapt-stage refiner``: fine-tune film's motion refiner on the video's own triplets.

The refiner (``models.refiner``) corrects where each input is read after the last parameter-free step of the motion.
Trained on the training clips, it does not carry over to other footage (its frames score film's within a few
hundredths of a dB); fitted to the triplets of one piece of footage, it corrects that footage's motion: what is
learned is specific to the scene, which is what an adaptation wants. On the input's own triplets the truth is
known, so the training step is the refiner's (``train.loop.refiner_terms``: the frame against the truth, and the
corrected motion against the motion film's own flow finds from the true middle frame to each input).

Unlike the selector's adaptation (``framefill.adapt``), nothing can be cached: what follows the refiner (the warps,
the fallback, the fusion, the selector) is in each step's graph, so a step costs a forward pass of the whole model
and the refiner's backward. Weights without a refiner get a fresh one (``Film.with_refiner``: zero head, so the
model starts as the loaded weights); the guard is the selector path's, scored with the whole model.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from framefill.adapt_config import NO_TIME, AdaptConfig, AdaptReport, guard_sets
from framefill.adapt_data import Triplet, crop_side, crop_triplet, hard_crops
from framefill.eval_metrics import psnr
from framefill.train.loop import TrainConfig, refiner_terms, to_uint8

log = logging.getLogger(__name__)


def adapt_refiner(base: torch.nn.Module, runs: list[np.ndarray], full: list[np.ndarray], train: list[Triplet],
                  held: list[Triplet], cfg: AdaptConfig, device: torch.device, rng: np.random.Generator, t0: float,
                  tick: Callable[[], None]) -> tuple[torch.nn.Module, AdaptReport]:
    """``adapt.adapt_model``'s work for the refiner, from its sampled ``runs`` (halved where large; ``full`` the
    same at full size) and their ``train`` and ``held`` triplets, begun at ``t0``: the guard's scores before,
    training until the budget less the guard's second turn, the scores after, and the choice."""
    model = trainable_refiner(base, cfg.refiner_filters, device)
    divisor = int(model.divisor)
    guard, guard_full = guard_sets(runs, full, held, cfg, divisor)
    before = whole_score(model, guard, device)
    before_full = whole_score(model, guard_full, device) if guard_full else None
    turn = time.perf_counter() - t0  # sampling and one turn of the guard: the second must fit in the budget too
    tick()
    stop = t0 + cfg.seconds - 0.5 - max(0.05 * cfg.seconds, 0.6 * turn)
    steps = train_refiner(model, runs, train, crop=cfg.crop, batch=cfg.refiner_batch, places=cfg.places,
                          keep=cfg.crops_per_triplet, lr=cfg.lr, warmup=cfg.warmup, steps=cfg.steps, stop=stop,
                          rng=rng, device=device, tick=tick)
    if not steps:
        return base, AdaptReport(kept=False, gain_db=None, held_out=len(guard), triplets=len(train), steps=0,
                                 seconds=time.perf_counter() - t0, reason=NO_TIME)
    gain = whole_score(model, guard, device) - before
    gain_full = whole_score(model, guard_full, device) - before_full if guard_full else None
    tick()
    adapted = model.cpu().eval().requires_grad_(False)
    out = AdaptReport.judged(cfg, gain, gain_full, held_out=len(guard), triplets=len(train), steps=steps,
                             seconds=time.perf_counter() - t0)
    log.info("refiner %s", out.summary())
    return (adapted if out.kept else base), out


def trainable_refiner(base: torch.nn.Module, filters: int, device: torch.device) -> torch.nn.Module:
    """A float32 copy of ``base`` with a refiner (a fresh one, zero head, where it has none), only that trainable."""
    model = copy.deepcopy(base).float().to(device).with_refiner(filters)
    model.requires_grad_(False)
    model.refiner.requires_grad_(True)
    return model.train()


def as_batch(samples: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """``(B, 3, 3, h, w)`` float in [0, 1] from samples ``(3, h, w, 3)`` uint8 (inputs, then the truth)."""
    x = np.stack([np.ascontiguousarray(s) for s in samples])
    return torch.from_numpy(x).permute(0, 1, 4, 2, 3).to(device).float() / 255


@torch.no_grad()
def whole_score(model: torch.nn.Module, samples: list[np.ndarray], device: torch.device) -> float:
    """Mean PSNR (8-bit RGB) of the whole model's frames on held-out samples ``(3, h, w, 3)`` uint8."""
    was = model.training
    model.eval()
    scores = []
    for s in samples:
        x = as_batch([s], device)
        scores.append(psnr(to_uint8(model(x[:, 0], x[:, 1])[0]), to_uint8(x[0, 2])))
    model.train(was)
    return float(np.mean(scores))


def train_refiner(model: torch.nn.Module, runs: list[np.ndarray], train: list[Triplet], *, crop: int, batch: int,
                  places: int, keep: int, lr: float, warmup: int, steps: int, stop: float,
                  rng: np.random.Generator, device: torch.device, tick: Callable[[], None]) -> int:
    """Train ``model``'s refiner on crops of ``train`` (the most moving places of each triplet, mirrored at random)
    until ``stop`` (a ``time.perf_counter`` deadline), or for exactly ``steps`` steps where that is not 0.
    Returns the number of steps taken."""
    h, w = runs[0].shape[1:3]
    side = crop_side(h, w, crop, int(model.divisor))
    pool = hard_crops(runs, train, side, places, rng, keep=keep)
    tcfg = TrainConfig(refiner=model.config.refiner_filters)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    done = 0
    while (done < steps) if steps else (time.perf_counter() < stop):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (done + 1) / warmup)
        x = as_batch([crop_triplet(runs, *pool[int(i)], side) for i in rng.integers(len(pool), size=batch)], device)
        if rng.random() < 0.5:
            x = x.flip(-1)
        loss = refiner_terms(model, x, tcfg)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.refiner.parameters(), 1.0)
        opt.step()
        done += 1
        tick()
    return done
