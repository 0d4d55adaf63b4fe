"""Training convlstm's window-motion gate alone (``framefill train --model convlstm --gate``): a cache of windows,
then many cheap steps.

The gate (``framefill.models.window_motion``) decides where film's reads move by the acceleration the outer frames
measure. Everything it reads and all of its outcomes come from the frozen film: per window, its evidence, film's
frame as it is (``base``) and with half and all of the correction (``half``, ``moved``). They are computed once
per window and kept (``OUT/gate_cache.pt``); a step then costs the gate's few convolutions at a quarter of the
resolution. The loss is the log of each window's mean squared error of the gated frame against the true middle
frame, averaged over the batch: the mean PSNR itself (up to a factor), so a window counts by how much its PSNR
moves, not by how large its errors are. Per place, the gate is pulled open where the moved frame is closer to the
truth and shut where film's is. Film's frame for a gate between 0 and 1 is taken as piecewise linear through its
frames with none, half and all of the correction (inference moves the reads by ``g a / 8``, which those three
frames sample).
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
    frame (``base``), film's frame with half the correction (``half``) and with all of it (``moved``), and the
    ``truth``; float16."""
    frames = window[None, :4].float()
    keep: dict = {}
    model.window_shift(frames, keep)
    i1, i2 = frames[:, 1], frames[:, 2]
    base = model.film(i1, i2)
    shift = torch.cat([keep["a"], keep["a"]], dim=1)
    half, moved = model.film(i1, i2, read_shift=0.5 * shift), model.film(i1, i2, read_shift=shift)
    return {"inputs": keep["inputs"][0].half(), "base": base[0].half(), "half": half[0].half(),
            "moved": moved[0].half(), "truth": window[4].half()}


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


def gated(g: torch.Tensor, base: torch.Tensor, half: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Film's frame for a gate ``g`` ``(B, 1, h, w)`` as the cache knows it: piecewise linear through the frames at
    ``g`` = 0 (``base``), 0.5 (``half``) and 1 (``moved``), each ``(B, 3, H, W)``."""
    g = F.interpolate(g, size=base.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(g < 0.5, torch.lerp(base, half, 2 * g), torch.lerp(half, moved, 2 * g - 1))


def gate_loss(gate: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean over a batch ``b`` of examples of the log mean squared error against the truth of the frame the
    gate makes (-10 / ln 10 times the change of its mean PSNR)."""
    frame = gated(gate(b["inputs"]), b["base"], b["half"], b["moved"])
    return torch.log(((frame - b["truth"]) ** 2).mean(dim=(1, 2, 3)) + 1e-5).mean()


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
        loss = gate_loss(gate, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, losses[-1])
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
        for name, frame in (("film", b["base"]), ("gated", gated(g, b["base"], b["half"], b["moved"])),
                            ("moved", b["moved"])):
            mse = ((frame.clamp(0, 1) - b["truth"]) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
            sums[name] += float((-10 * torch.log10(mse)).sum())
        sums["gate"] += float(g.mean(dim=(1, 2, 3)).sum())
    return {k: round(v / n, 3) for k, v in sums.items()}


def run_gate(trainer, cfg: GateConfig, on_step=None) -> list[float]:
    """``framefill train --model convlstm --gate N``: the cache (``OUT/gate_cache.pt``, reused by a rerun), then
    ``cfg.steps`` steps on the gate of ``trainer.model``; the EMA copy (what is exported) gets the trained gate, and
    the run's checkpoint is written at ``cfg.steps``, each step's loss to ``OUT/log.jsonl``, and the scores on the
    last tenth of the windows, held out of training, to ``OUT/gate_held_out.json`` (``held_out_scores``)."""
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

        n = len(cache["truth"])
        held = max(1, n // 10) if n >= 10 else 0  # the last tenth of the windows is held out: the gate's score
        losses = train_gate(model, {k: v[:n - held] for k, v in cache.items()}, cfg, logged)
    if held:
        scores = held_out_scores(model.gate, {k: v[n - held:] for k, v in cache.items()})
        (trainer.out / "gate_held_out.json").write_text(json.dumps(scores | {"windows": held}, indent=1))
    if trainer.ema is not None:
        trainer.ema.gate.load_state_dict(model.gate.state_dict())
    trainer.step = cfg.steps
    trainer.save()
    return losses
