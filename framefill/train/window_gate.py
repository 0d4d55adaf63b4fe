"""Training convlstm's window-motion gate alone (``framefill train --model convlstm --gate``): a cache of windows,
then many cheap steps.

The gate (``framefill.models.window_motion``) decides where film's reads move by the acceleration the outer frames
measure. Everything it reads and both of its outcomes come from the frozen film: per window, its evidence, film's
frame as it is (``base``) and film's frame with the full correction (``moved``). They are computed once per window
and kept (``OUT/gate_cache.pt``); a step then costs the gate's few convolutions at a quarter of the resolution. The
loss is the robust L1 of ``lerp(base, moved, g)`` against the true middle frame: per place, the gate is pulled open
where the moved frame is closer to the truth and shut where film's is. (Inference moves the reads by ``g a / 8``
instead of blending two frames; for a gate near 0 or 1, as it learns to be, the two agree.)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from framefill.train.losses import charbonnier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    samples: int = 1500  # windows in the cache
    steps: int = 3000
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0


@torch.no_grad()
def gate_example(model: torch.nn.Module, window: torch.Tensor) -> dict[str, torch.Tensor]:
    """One window ``(5, 3, h, w)`` (I0..I3, the truth) as the gate's training example: its ``inputs``, film's
    frame (``base``), film's frame with the full correction (``moved``) and the ``truth``; float16."""
    frames = window[None, :4].float()
    keep: dict = {}
    model.window_shift(frames, keep)
    i1, i2 = frames[:, 1], frames[:, 2]
    base = model.film(i1, i2)
    moved = model.film(i1, i2, read_shift=torch.cat([keep["a"], keep["a"]], dim=1))
    return {"inputs": keep["inputs"][0].half(), "base": base[0].half(), "moved": moved[0].half(),
            "truth": window[4].half()}


def build_cache(model: torch.nn.Module, dataset, count: int, rng: np.random.Generator, path: Path | None = None
                ) -> dict[str, torch.Tensor]:
    """``count`` windows drawn from ``dataset`` (``TripletDataset`` with ``context=4``) as stacked examples; read
    from ``path`` if it holds as many, else built and written there."""
    if path is not None and path.exists():
        cache = torch.load(path)
        if len(cache["truth"]) >= count:
            return {k: v[:count] for k, v in cache.items()}
    examples, t0 = [], time.perf_counter()
    for k in range(count):
        examples.append(gate_example(model, dataset.sample(rng)))
        if (k + 1) % 100 == 0:
            log.info("gate cache: %d of %d windows (%.0f s)", k + 1, count, time.perf_counter() - t0)
    cache = {key: torch.stack([e[key] for e in examples]) for key in examples[0]}
    if path is not None:
        torch.save(cache, path)
    return cache


def gate_loss(gate: torch.nn.Module, inputs: torch.Tensor, base: torch.Tensor, moved: torch.Tensor,
              truth: torch.Tensor) -> torch.Tensor:
    """The robust L1 of the gated blend of ``base`` and ``moved`` against ``truth`` (all ``(B, 3, h, w)``)."""
    g = F.interpolate(gate(inputs), size=truth.shape[-2:], mode="bilinear", align_corners=False)
    return charbonnier(torch.lerp(base, moved, g), truth)


def train_gate(model: torch.nn.Module, cache: dict[str, torch.Tensor], cfg: GateConfig,
               on_step=None) -> list[float]:
    """Train ``model.gate`` alone on the cache for ``cfg.steps`` steps (AdamW, cosine decay); the loss per step."""
    gate = model.gate
    gate.requires_grad_(True).train()
    opt = torch.optim.AdamW(gate.parameters(), lr=cfg.lr, weight_decay=1e-4)
    rng = np.random.default_rng(cfg.seed)
    n, losses = len(cache["truth"]), []
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
        idx = torch.from_numpy(rng.integers(n, size=min(cfg.batch, n)))
        b = {k: v[idx].float() for k, v in cache.items()}
        loss = gate_loss(gate, b["inputs"], b["base"], b["moved"], b["truth"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, losses[-1])
    gate.eval()
    return losses


def run_gate(trainer, cfg: GateConfig, on_step=None) -> list[float]:
    """``framefill train --model convlstm --gate N``: the cache (``OUT/gate_cache.pt``, reused by a rerun), then
    ``cfg.steps`` steps on the gate of ``trainer.model``; the EMA copy (what is exported) gets the trained gate, and
    the run's checkpoint is written at ``cfg.steps`` and each step's loss to ``OUT/log.jsonl``."""
    model = trainer.model
    if getattr(model, "gate", None) is None:
        raise ValueError("this convlstm config has no window-motion gate (window_filters 0); pick convlstm-s")
    model.eval()
    t0 = time.perf_counter()
    cache = build_cache(model, trainer.dataset, cfg.samples, trainer.rng, trainer.out / "gate_cache.pt")
    with open(trainer.out / "log.jsonl", "w") as log_file:  # tools/log_summary.py's format (time: the whole run's)

        def logged(step: int, loss: float) -> None:
            log_file.write(json.dumps({"total": loss, "step": step, "time": round(time.perf_counter() - t0, 1)}) + "\n")
            if on_step is not None:
                on_step(step, loss)

        losses = train_gate(model, cache, cfg, logged)
    if trainer.ema is not None:
        trainer.ema.gate.load_state_dict(model.gate.state_dict())
    trainer.step = cfg.steps
    trainer.save()
    return losses
