"""Training convlstm's ConvLSTM synthesis and attention refinement alone from a cache of windows (``framefill train
--model convlstm --residual-cache N``).

Everything those two stages read comes from the frozen parts of the model: per window, the window aligned to
t = 0.5 by film's flows (``convlstm.align_window``) and film's frame with the trained gate's correction
(``ConvLSTMNet``'s base frame). Both are worked out once per window and kept (``OUT/residual_cache.pt``, about
1.8 MB a window of 224 px in float16); a step then costs the two stages alone, not film's flows for a window and
the gate's three more. The loss is that of the gate's runs (``window_gate``): the log of each window's mean squared
error against the true middle frame, averaged over the batch, so that a window counts by how much its PSNR moves.
The last tenth of the windows is held out; film's (gated) frame's and the model's PSNR on them go to
``OUT/residual_held_out.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from framefill.train.cached import CacheConfig, finish, split_held, step_log, train_cached

log = logging.getLogger(__name__)

STAGES = ("synthesis", "refinement")  # what this run trains: the model's attributes of those names
KEYS = ("aligned", "base", "truth")  # a cached window


@torch.no_grad()
def residual_example(model: torch.nn.Module, window: torch.Tensor) -> dict[str, torch.Tensor]:
    """One window ``(5, 3, h, w)`` (I0..I3, the truth) as the stages' training example, float16: the ``aligned``
    window ``(4, 3, h, w)``, film's frame with the gate's correction (``base``, what the stages add to) and the
    ``truth``."""
    _, aux = model(window[None, :4].float(), return_aux=True)
    return {"aligned": aux["aligned"][0].half(), "base": aux["film"][0].half(), "truth": window[4].half()}


def build_cache(model: torch.nn.Module, dataset, count: int, rng: np.random.Generator, path: Path | None = None
                ) -> dict[str, torch.Tensor]:
    """``count`` windows drawn from ``dataset`` (``TripletDataset`` with ``context=4``) as stacked examples; read from
    ``path`` if it holds as many of this size, else built and written there."""
    if path is not None and path.exists():
        cache = torch.load(path, mmap=True)
        if set(cache) == set(KEYS) and len(cache["truth"]) >= count:
            return {k: v[:count].clone() for k, v in cache.items()}
    examples, t0 = [], time.perf_counter()
    for k in range(count):
        examples.append(residual_example(model, dataset.sample(rng)))
        if (k + 1) % 100 == 0:
            log.info("residual cache: %d of %d windows (%.0f s)", k + 1, count, time.perf_counter() - t0)
    cache = {key: torch.stack([e[key] for e in examples]) for key in KEYS}
    if path is not None:
        path.unlink(missing_ok=True)
        torch.save(cache, path)
    return cache


def residual_frame(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's frame (unclamped) from a batch ``b`` of cached examples (float32): film's frame plus the
    synthesis' residual, then the refinement's, as ``ConvLSTMNet.forward`` makes it."""
    aligned, base = b["aligned"], b["base"]
    synth = base + model.synthesis(aligned, base)
    return model.refinement(synth, aligned[:, 1], aligned[:, 2])


def residual_loss(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean over a batch of the log mean squared error of the model's frame against the truth."""
    return torch.log(((residual_frame(model, b) - b["truth"]) ** 2).mean(dim=(1, 2, 3)) + 1e-5).mean()


def _params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for stage in STAGES for p in getattr(model, stage).parameters()]


def train_residual(model: torch.nn.Module, cache: dict[str, torch.Tensor], cfg: CacheConfig, on_step=None,
                   start: int = 0, state: Path | None = None) -> list[float]:
    """Train ``model``'s synthesis and refinement alone on the cache for ``cfg.steps`` steps (AdamW, a short warm-up,
    cosine decay, gradients clipped at 1; ``cached.train_cached`` with the optimiser's ``state`` file), each batch
    mirrored at random; the loss per step."""
    params = _params(model)
    for stage in STAGES:
        getattr(model, stage).requires_grad_(True).train()

    def loss_of(idx: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        b = {k: v[idx].float() for k, v in cache.items()}
        dims = [d for d, flip in ((-1, rng.random() < 0.5), (-2, rng.random() < 0.5)) if flip]
        return residual_loss(model, {k: v.flip(dims) for k, v in b.items()} if dims else b)

    losses = train_cached(params, len(cache["truth"]), cfg.steps, cfg.batch, cfg.lr, cfg.seed, loss_of,
                          warmup=min(100, cfg.steps // 10 + 1), clip=1.0, on_step=on_step, start=start, state=state)
    for stage in STAGES:
        getattr(model, stage).eval()
    return losses


@torch.no_grad()
def held_out_scores(model: torch.nn.Module, cache: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean PSNR (dB) over cached examples of film's gated frame (``film``: what untrained stages give) and of the
    model's frame (``model``)."""
    sums = {"film": 0.0, "model": 0.0}
    n = len(cache["truth"])
    for i in range(0, n, 16):
        b = {k: v[i:i + 16].float() for k, v in cache.items()}
        for name, frame in (("film", b["base"]), ("model", residual_frame(model, b))):
            mse = ((frame.clamp(0, 1) - b["truth"]) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
            sums[name] += float((-10 * torch.log10(mse)).sum())
    return {k: round(v / n, 3) for k, v in sums.items()}


def run_residual(trainer, cfg: CacheConfig, on_step=None, max_seconds: float | None = None) -> list[float]:
    """``framefill train --model convlstm --residual-cache N``: the cache (``OUT/residual_cache.pt``, reused by a
    rerun), then ``cfg.steps`` steps on the synthesis and refinement of ``trainer.model``; the EMA copy (what is
    exported) gets the trained stages, the checkpoint is written every 250 steps (``cached.CHECKPOINT_EVERY``) and at
    the last step done, each step's loss goes to ``OUT/log.jsonl`` and the held-out scores to
    ``OUT/residual_held_out.json``. ``--max-minutes`` (the cache's time included), Ctrl-C and SIGTERM end the steps
    where they are and keep what was trained; the same command goes on from that step. A run that has done its steps
    returns at once."""
    model = trainer.model
    if trainer.step >= cfg.steps:
        return []
    model.eval()
    t0 = time.perf_counter()
    cache = build_cache(model, trainer.dataset, cfg.samples, trainer.rng, trainer.out / "residual_cache.pt")
    train, held = split_held(cache)
    deadline = None if max_seconds is None else t0 + max_seconds
    with step_log(trainer.out, t0, time.perf_counter, on_step, deadline=deadline, start=trainer.step,
                  on_stop=lambda done: finish(trainer, STAGES, done)) as logged:
        train_residual(model, train, cfg, logged, start=trainer.step, state=trainer.out / "residual_opt.pt")
    if len(held["truth"]):
        scores = held_out_scores(model, held)
        (trainer.out / "residual_held_out.json").write_text(json.dumps(scores | {"windows": len(held["truth"])},
                                                                       indent=1))
    finish(trainer, STAGES, logged.done)
    return logged.losses
