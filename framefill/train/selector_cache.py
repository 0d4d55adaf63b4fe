"""Training film's selector alone from a cache (``framefill train --selector N --selector-cache K``): cheap steps.

The selector (``film_parts.Selector``) chooses per pixel between warped frame 0, warped frame 1 and the blend; all
it chooses from and all it reads come from the parts before it, which do not learn while it does
(``Film.selector_evidence``: the candidates, the rule's logits, the fusion's residual and the selector's inputs).
They are computed once per crop and kept (``OUT/selector_cache.pt``, float16), so a step costs the selector's small
U-Net at half resolution and the loss, not film's Lucas-Kanade flow (about half the time of a step of the run that
draws new crops each step, on a CPU), at the price of seeing the same crops again (mirrored at random). The loss is the
selector's own in that run (``train.loop.selector_terms``: robust L1, census, Laplacian, the choice's target).

The last tenth of the crops is held out of training; the rule's frames (the selector's offset at zero), the
selector's as it started and as it ended are scored on them (``OUT/selector_held_out.json``).

With ``--sharpen N`` the stage trained is the sharpener (``framefill.models.sharpen``) instead, the selector frozen:
the cache also keeps the two warped frames sampled bicubic and the sharpener's evidence, and the held-out scores are
the frames without it (what a fresh sharpener gives), as it started and as it ended.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from framefill.eval_metrics import psnr
from framefill.train.cached import CacheConfig, finish, split_held, step_log, train_cached
from framefill.train.loop import image_terms, selector_terms, to_uint8

log = logging.getLogger(__name__)

KEYS = ("candidates", "rule", "residual", "inputs", "truth")
SHARP_KEYS = ("bicubic", "sharpen")  # kept too for a model with a sharpener


def _stage(tcfg) -> str:
    """The stage a cached run under ``TrainConfig`` ``tcfg`` trains: the sharpener with ``--sharpen``, else the
    selector."""
    return "sharpener" if tcfg.sharpen else "selector"


SelectorCacheConfig = CacheConfig  # samples: crops in the cache; steps of batches of them


@torch.no_grad()
def build_cache(model: torch.nn.Module, dataset, count: int, rng: np.random.Generator, path: Path | None = None,
                batch: int = 8) -> dict[str, torch.Tensor]:
    """``count`` crops drawn from ``dataset`` (``draw``/``build``, as the trainer draws them) with what the selector
    chooses from and reads, stacked, float16: ``candidates`` ``(count, K, 3, h, w)``, ``rule``, ``residual``,
    ``inputs`` and the ``truth`` ``(count, 3, h, w)``. Read from ``path`` if it holds as many with this selector's
    inputs and choices, else built and written there."""
    keys = KEYS + (SHARP_KEYS if getattr(model, "sharpener", None) is not None else ())
    if path is not None and path.exists():
        cache = torch.load(path, mmap=True)
        if (len(cache["truth"]) >= count and cache["inputs"].shape[1] == model.selector.inputs
                and cache["candidates"].shape[1] == model.selector.choices and all(k in cache for k in keys)):
            return {k: v[:count] for k, v in cache.items()}
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    t0 = time.perf_counter()
    for k in range(0, count, batch):
        samples = [dataset.build(dataset.draw(rng)) for _ in range(min(batch, count - k))]
        x = torch.stack([s for s, _ in samples]).float()
        t = torch.tensor([t for _, t in samples], dtype=torch.float32).view(-1, 1, 1, 1)
        ev = model.selector_evidence(x[:, 0], x[:, 1], t)
        parts["candidates"].append(torch.stack(ev["candidates"], dim=1).half())
        for key in ("rule", "residual", "inputs") + keys[len(KEYS):]:
            value = ev[key]
            parts[key].append((torch.stack(value, dim=1) if isinstance(value, tuple) else value).half())
        parts["truth"].append(x[:, 2].half())
        if (k // batch + 1) % 25 == 0:
            log.info("selector cache: %d of %d crops (%.0f s)", k + len(samples), count, time.perf_counter() - t0)
    cache = {key: torch.cat(v) for key, v in parts.items()}
    if path is not None:
        tmp = path.with_suffix(".tmp")
        torch.save(cache, tmp)
        tmp.replace(path)
    return cache


def _batch(cache: dict[str, torch.Tensor], idx: torch.Tensor, flip: tuple[int, ...] = ()
           ) -> tuple[dict, torch.Tensor]:
    """Cached crops ``idx`` as ``selector_evidence``'s dict and the truth, float32, mirrored along ``flip``."""
    def f(a: torch.Tensor) -> torch.Tensor:
        a = a[idx].float()
        return a.flip(flip) if flip else a

    cands = f(cache["candidates"])
    ev = {"candidates": tuple(cands[:, k] for k in range(cands.shape[1])), "rule": f(cache["rule"]),
          "residual": f(cache["residual"]), "inputs": f(cache["inputs"])}
    if "bicubic" in cache:
        bicubic = f(cache["bicubic"])
        ev |= {"bicubic": (bicubic[:, 0], bicubic[:, 1]), "sharpen": f(cache["sharpen"])}
    return ev, f(cache["truth"])


def _frames(model: torch.nn.Module, ev: dict, fresh: str | None = None) -> torch.Tensor:
    """The model's frames from cached evidence; ``fresh``: with that stage's output at zero (a fresh one's)."""
    offset = model.selector.offset(ev)
    if fresh == "selector":
        offset = torch.zeros_like(offset)
    return model.compose(ev, offset, None if fresh == "sharpener" else model.sharpen_gains(ev))[0]


def sharpener_terms(model: torch.nn.Module, ev: dict, gt: torch.Tensor, tcfg) -> dict[str, torch.Tensor]:
    """The loss of film's sharpener alone from cached evidence: ``image_terms`` of the model's frame (the selector
    frozen: its offset without autograd)."""
    with torch.no_grad():
        offset = model.selector.offset(ev)
    terms = image_terms(model.compose(ev, offset, model.sharpen_gains(ev))[0], gt, tcfg)
    terms["total"] = sum(terms.values())
    return terms


FLIPS = ((), (-1,), (-2,), (-2, -1))  # mirrored crops: the selector's inputs and candidates mirror with the frame


def train_selector(model: torch.nn.Module, cache: dict[str, torch.Tensor], cfg: SelectorCacheConfig, tcfg,
                   on_step=None, start: int = 0, state: Path | None = None) -> list[float]:
    """Train ``model.selector`` (or its sharpener, where it has one: ``sharpener_terms``) alone on the cache for
    ``cfg.steps`` steps (AdamW, a short warm-up, cosine decay, gradients clipped at 1; from step ``start`` of them,
    ``cached.train_cached``) with ``selector_terms`` under ``tcfg``, each batch mirrored at random; the loss per
    step. ``state``: the optimiser's state file (``train_cached``)."""
    sel = getattr(model, _stage(tcfg))
    sel.requires_grad_(True).train()
    terms = sharpener_terms if _stage(tcfg) == "sharpener" else selector_terms

    def loss_of(idx: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        ev, gt = _batch(cache, idx, FLIPS[int(rng.integers(len(FLIPS)))])
        return terms(model, ev, gt, tcfg)["total"]

    losses = train_cached(list(sel.parameters()), len(cache["truth"]), cfg.steps, cfg.batch, cfg.lr, cfg.seed,
                          loss_of, warmup=min(100, cfg.steps // 10 + 1), clip=1.0, on_step=on_step, start=start,
                          state=state)
    sel.eval()
    return losses


@torch.no_grad()
def held_out_psnr(model: torch.nn.Module, cache: dict[str, torch.Tensor], rule: bool = False,
                  stage: str = "selector") -> float:
    """Mean PSNR (dB, on 8-bit levels) over cached crops of the model's frame, or with ``rule`` of the frame without
    the trained stage (the selector's offset at zero, or no sharpening: what a freshly initialised one gives)."""
    scores = []
    for i in range(0, len(cache["truth"]), 16):
        ev, gt = _batch(cache, torch.arange(i, min(i + 16, len(cache["truth"]))))
        frames = _frames(model, ev, fresh=stage if rule else None)
        scores += [psnr(to_uint8(f), to_uint8(g)) for f, g in zip(frames, gt, strict=True)]  # as framefill eval scores
    return round(float(np.mean(scores)), 3)


def run_selector_cache(trainer, cfg: SelectorCacheConfig, on_step=None, max_seconds: float | None = None
                       ) -> list[float]:
    """``framefill train --selector N --selector-cache K``: the cache (``OUT/selector_cache.pt``, reused by a rerun),
    then ``cfg.steps`` steps on the selector of ``trainer.model``; the EMA copy (what is exported) gets the trained
    selector, the checkpoint is written every 250 steps (``cached.CHECKPOINT_EVERY``) and at the last step done, each
    step's loss to ``OUT/log.jsonl`` and the held-out scores to ``OUT/selector_held_out.json``. After ``max_seconds``
    (the cache's time included; ``--max-minutes``) the steps end where they are, and so do they at Ctrl-C or SIGTERM,
    after the selector trained so far is put in the EMA copy and the checkpoint (what ``--export`` then writes); the
    same command then goes on from that step."""
    model = trainer.model
    if getattr(model, "selector", None) is None:
        raise ValueError("--selector-cache trains film's selector: give --selector too")
    stage = _stage(trainer.cfg)
    if stage == "sharpener" and getattr(model, "sharpener", None) is None:
        raise ValueError("--sharpen trains film's sharpener: the model has none")
    if trainer.step >= cfg.steps:  # resumed from a run that has done its steps: nothing left to train
        return []
    model.eval()
    t0 = time.perf_counter()
    cache = build_cache(model, trainer.dataset, cfg.samples, trainer.rng, trainer.out / "selector_cache.pt")
    train, held = split_held(cache)
    scores = {}
    if len(held["truth"]):  # the rule's (a fresh selector's) and the selector's as it starts
        scores = {"rule": held_out_psnr(model, held, rule=True, stage=stage), "start": held_out_psnr(model, held)}
    deadline = None if max_seconds is None else t0 + max_seconds
    with step_log(trainer.out, t0, time.perf_counter, on_step, deadline=deadline, start=trainer.step,
                  on_stop=lambda done: finish(trainer, stage, done)) as logged:
        train_selector(model, train, cfg, trainer.cfg, logged, start=trainer.step,
                       state=trainer.out / f"{stage}_opt.pt")
    getattr(model, stage).eval()
    if len(held["truth"]):
        scores["trained"] = held_out_psnr(model, held)
        (trainer.out / f"{stage}_held_out.json").write_text(json.dumps(scores | {"crops": len(held["truth"])},
                                                                       indent=1))
    finish(trainer, stage, logged.done)
    return logged.losses
