"""Training convlstm's window-motion gate alone (``framefill train --model convlstm --gate``): a cache of windows,
then many cheap steps.

The gate (``framefill.models.window_motion``) decides where film's reads move by the acceleration the outer frames
measure. Everything it reads and all of its outcomes come from the frozen film: per window, its evidence and
film's frames with the correction opened by 0, 0.5, 1, ... up to the gate's reach (``frames``; with a reach of 1:
as it is, with half and with all of it). They are computed once per window and kept (``OUT/gate_cache.pt``); a
step then costs the gate's few convolutions at a quarter of the resolution. The loss is the log of each window's
mean squared error of the gated frame against the true middle frame, averaged over the batch: the mean PSNR
itself (up to a factor), so a window counts by how much its PSNR moves, not by how large its errors are. Per
place, the gate is pulled open where a moved frame is closer to the truth and shut where film's is. Film's frame
for a gate between those openings is taken as piecewise linear through them (inference moves the reads by
``g a / 8``, which those frames sample).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from framefill.train.cached import CacheConfig, finish, split_held, step_log, train_cached

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig(CacheConfig):  # samples: windows in the cache
    batch: int = 16
    lr: float = 2e-3
    reach: float = 1.0  # the gate's widest opening (a multiple of STEP), in multiples of a / 8
    level: int | None = None  # the gate's resolution, 1 / 2**level (None: the model config's window_level)


STEP = 0.5  # the cached openings of the correction: 0, STEP, 2 STEP, ... up to the gate's reach


def check_reach(reach: float) -> None:
    """A ``ValueError`` unless ``reach`` is a gate's reach: 1 or more, a multiple of ``STEP``."""
    if reach < 1 or reach / STEP != round(reach / STEP):
        raise ValueError(f"the gate's reach must be 1 or more, in steps of {STEP}: got {reach}")


def openings(reach: float) -> list[float]:
    """The openings of the correction whose frames a window's example holds, for a gate of this ``reach``."""
    return [STEP * k for k in range(round(reach / STEP) + 1)]


@torch.no_grad()
def gate_example(model: torch.nn.Module, window: torch.Tensor, frames: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """One window ``(5, 3, h, w)`` (I0..I3, the truth) as the gate's training example: its ``inputs``, film's
    ``frames`` ``(K, 3, h, w)`` with the correction opened by each of ``openings(gate.reach)`` (the first: film's
    frame as it is), and the ``truth``; float16. Given ``frames`` (this window's, from a cache of other evidence),
    only the inputs are worked out."""
    window_frames = window[None, :4].float()
    keep: dict = {}
    model.window_shift(window_frames, keep)
    if frames is None:
        i1, i2 = window_frames[:, 1], window_frames[:, 2]
        shift = torch.cat([keep["a"], keep["a"]], dim=1)
        films = [model.film(i1, i2, read_shift=g * shift if g else None)[0] for g in openings(model.gate.reach)]
        frames = torch.stack(films).half()
    return {"inputs": keep["inputs"][0].half(), "frames": frames, "truth": window[4].half()}


def _as_frames(cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A cache written before ``frames`` (its ``base``, ``half`` and ``moved``: the openings of a reach of 1)."""
    if "base" in cache:
        cache = {"inputs": cache["inputs"], "truth": cache["truth"],
                 "frames": torch.stack([cache["base"], cache["half"], cache["moved"]], dim=1)}
    return cache


def build_cache(model: torch.nn.Module, dataset, count: int, rng: np.random.Generator, path: Path | None = None
                ) -> dict[str, torch.Tensor]:
    """``count`` windows drawn from ``dataset`` (``TripletDataset`` with ``context=4``) as stacked examples; read
    from ``path`` if it holds as many, with the openings of this gate's reach and its evidence, else built and
    written there. A cache at ``path`` with the same openings and level but other evidence lends its film frames:
    the windows are drawn again (the same seed draws the same windows, each checked against the cached truth) and
    only the evidence is worked out, a fraction of the cost."""
    old = None
    if path is not None and path.exists():
        cache = _as_frames(torch.load(path, mmap=True))
        level = cache["inputs"].shape[-1] << model.config.window_level == cache["truth"].shape[-1]
        if len(cache["truth"]) >= count and cache["frames"].shape[1] == len(openings(model.gate.reach)) and level:
            if cache["inputs"].shape[1] == model.gate.inputs:
                return {k: v[:count].clone() for k, v in cache.items()}
            old = cache  # the correction, so film's frames, are the same at the same level
    examples, t0, lent = [], time.perf_counter(), 0
    for k in range(count):
        window = dataset.sample(rng)
        same = old is not None and torch.equal(window[4].half(), old["truth"][k])
        examples.append(gate_example(model, window, old["frames"][k] if same else None))  # stacked (copied) below
        lent += same
        if (k + 1) % 100 == 0:
            log.info("gate cache: %d of %d windows (%.0f s)", k + 1, count, time.perf_counter() - t0)
    if old is not None:
        log.info("gate cache: film's frames of %d of %d windows taken from the cache of other evidence", lent, count)
    cache = {key: torch.stack([e[key] for e in examples]) for key in examples[0]}
    if path is not None:
        path.unlink(missing_ok=True)  # a link to another run's cache stays that run's
        torch.save(cache, path)
    return cache


def gated(g: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Film's frame for a gate ``g`` ``(B, 1, h, w)`` as the cache knows it: piecewise linear through ``frames``
    ``(B, K, 3, H, W)``, film's frames at the openings 0, STEP, ... (beyond the last: the last)."""
    g = F.interpolate(g, size=frames.shape[-2:], mode="bilinear", align_corners=False)
    pos = (g / STEP).clamp(0, frames.shape[1] - 1)
    low = pos.floor().clamp(max=frames.shape[1] - 2).long()  # (B, 1, H, W)
    pick = low[:, None].expand(-1, -1, 3, -1, -1)
    below, above = frames.gather(1, pick)[:, 0], frames.gather(1, pick + 1)[:, 0]
    return torch.lerp(below, above, pos - low)


def gate_loss(gate: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean over a batch ``b`` of examples of the log mean squared error against the truth of the frame the
    gate makes (-10 / ln 10 times the change of its mean PSNR)."""
    frame = gated(gate(b["inputs"]), b["frames"])
    return torch.log(((frame - b["truth"]) ** 2).mean(dim=(1, 2, 3)) + 1e-5).mean()


def train_gate(model: torch.nn.Module, cache: dict[str, torch.Tensor], cfg: GateConfig,
               on_step=None, start: int = 0, state: Path | None = None) -> list[float]:
    """Train ``model.gate`` alone on the cache for ``cfg.steps`` steps (AdamW, cosine decay; from step ``start`` of
    them, ``cached.train_cached``, with the optimiser's ``state`` file); the loss per step."""
    gate = model.gate
    gate.requires_grad_(True).train()
    losses = train_cached(list(gate.parameters()), len(cache["truth"]), cfg.steps, cfg.batch, cfg.lr, cfg.seed,
                          lambda idx, rng: gate_loss(gate, {k: v[idx].float() for k, v in cache.items()}),
                          on_step=on_step, start=start, state=state)
    gate.eval()
    return losses


@torch.no_grad()
def held_out_scores(gate: torch.nn.Module, cache: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean PSNR (dB) over cached examples of film's frame (``film``), of the frame the gate makes (``gated``), of the
    frame with all of the correction (``moved``), and the gate's mean opening (``gate``)."""
    sums = {"film": 0.0, "gated": 0.0, "moved": 0.0, "gate": 0.0}
    n = len(cache["truth"])
    for i in range(0, n, 32):
        b = {k: v[i:i + 32].float() for k, v in cache.items()}
        g = gate(b["inputs"])
        for name, frame in (("film", b["frames"][:, 0]), ("gated", gated(g, b["frames"])),
                            ("moved", b["frames"][:, round(1 / STEP)])):
            mse = ((frame.clamp(0, 1) - b["truth"]) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
            sums[name] += float((-10 * torch.log10(mse)).sum())
        sums["gate"] += float(g.mean(dim=(1, 2, 3)).sum())
    return {k: round(v / n, 3) for k, v in sums.items()}


def run_gate(trainer, cfg: GateConfig, on_step=None, max_seconds: float | None = None) -> list[float]:
    """``framefill train --model convlstm --gate N``: the cache (``OUT/gate_cache.pt``, reused by a rerun), then
    ``cfg.steps`` steps on the gate of ``trainer.model``; the EMA copy (what is exported) gets the trained gate, and
    the run's checkpoint is written every 250 steps (``cached.CHECKPOINT_EVERY``) and at the last step done, each
    step's loss to ``OUT/log.jsonl``, and the scores on the last tenth of the windows, held out of training, to
    ``OUT/gate_held_out.json`` (``held_out_scores``). After ``max_seconds`` (the cache's time included;
    ``--max-minutes``) the steps end where they are, and so do they at Ctrl-C or SIGTERM, after the gate trained so
    far is put in the EMA copy and the checkpoint (what ``--export`` then writes); the same command then goes on from
    that step."""
    model = trainer.model
    if getattr(model, "gate", None) is None:
        raise ValueError("this convlstm config has no window-motion gate (window_filters 0); pick convlstm-s")
    check_reach(cfg.reach)
    if trainer.step >= cfg.steps:  # resumed from a run that has done its steps: nothing left to train (nor to cache)
        return []
    level = model.config.window_level if cfg.level is None else cfg.level
    for m in (model, trainer.ema):  # reach and level are the model's: its config carries them into the weights
        if m is not None:
            m.config = replace(m.config, window_reach=cfg.reach, window_level=level)
            m.gate.reach = cfg.reach
    model.eval()
    t0 = time.perf_counter()
    cache = build_cache(model, trainer.dataset, cfg.samples, trainer.rng, trainer.out / "gate_cache.pt")
    train, held = split_held(cache)  # the last tenth of the windows is held out: the gate's score
    deadline = None if max_seconds is None else t0 + max_seconds
    with step_log(trainer.out, t0, time.perf_counter, on_step, deadline=deadline, start=trainer.step,
                  on_stop=lambda done: finish(trainer, "gate", done)) as logged:
        train_gate(model, train, cfg, logged, start=trainer.step, state=trainer.out / "gate_opt.pt")
    model.gate.eval()
    if len(held["truth"]):
        scores = held_out_scores(model.gate, held)
        (trainer.out / "gate_held_out.json").write_text(json.dumps(scores | {"windows": len(held["truth"])},
                                                                   indent=1))
    finish(trainer, "gate", logged.done)
    return logged.losses
