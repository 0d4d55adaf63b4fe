"""What the stages trained alone from a cache share (convlstm's gate, ``window_gate``, and its ConvLSTM and
refinement, ``window_residual``; film's selector, ``selector_cache``): the held-out split, the steps over random
batches of cached examples, their log and the optimiser's state."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# Steps between the checkpoints written while a cached stage trains (as ``TrainConfig.ckpt_every`` for the main
# loop): a run killed without a signal to catch (a machine or session that ends) loses at most these steps.
CHECKPOINT_EVERY = 250


@dataclass(frozen=True)
class CacheConfig:
    """A cached stage's run: examples in the cache, then steps of batches of them (AdamW from ``lr``, cosine)."""

    samples: int = 1500
    steps: int = 3000
    batch: int = 8
    lr: float = 1e-3
    seed: int = 0


def split_held(cache: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The cache's examples to train on and the last tenth, held out (none under ten examples)."""
    n = len(cache["truth"])
    held = max(1, n // 10) if n >= 10 else 0
    return {k: v[:n - held] for k, v in cache.items()}, {k: v[n - held:] for k, v in cache.items()}


def train_cached(params: list[torch.nn.Parameter], n: int, steps: int, batch: int, lr: float, seed: int,
                 loss_of: Callable[[torch.Tensor, np.random.Generator], torch.Tensor], *, warmup: int = 1,
                 clip: float | None = None, on_step: Callable[[int, float], None] | None = None,
                 start: int = 0, state: Path | None = None) -> list[float]:
    """AdamW steps ``start + 1`` to ``steps`` on ``params`` (a linear warm-up over ``warmup`` steps, cosine decay from
    ``lr`` over all ``steps``, gradients clipped at ``clip`` if given), each on the loss ``loss_of(idx, rng)`` of
    ``batch`` random examples ``idx`` of ``n``; the loss per step. ``start`` > 0 goes on with a run that stopped
    there (its schedule where it was, batches drawn anew). ``state``: a file for the optimiser's state (AdamW's
    moments), written every ``CHECKPOINT_EVERY`` steps (before ``on_step`` sees that step, so that a checkpoint
    written there has the moments of the same step) and wherever the steps end (done, out of time, Ctrl-C or
    SIGTERM), and read when going on from ``start`` > 0, so that a resumed run goes on as the stopped one would
    have; without it (or one that does not fit these ``params``), a fresh state."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    if start and state is not None and state.exists():
        try:
            opt.load_state_dict(torch.load(state, weights_only=True))
        except (ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:  # another stage or width
            log.warning("optimiser state %s does not fit this stage (%s); starting a fresh one", state, exc)
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng([seed, start] if start else seed)
    losses = []
    try:
        for step in range(start, steps):
            for group in opt.param_groups:
                group["lr"] = float(lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * step / steps)))
            loss = loss_of(torch.from_numpy(rng.integers(n, size=min(batch, n))), rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            losses.append(float(loss.detach()))
            if state is not None and (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:  # (the last: below)
                torch.save(opt.state_dict(), state)
            if on_step is not None:
                on_step(step + 1, losses[-1])
    finally:
        if state is not None and losses:
            torch.save(opt.state_dict(), state)
    return losses


class StepLog:
    """``step_log``'s callback: a step's loss to the log and on to ``on_step``; it keeps the steps done and their
    losses, checkpoints (``checkpoint(steps done)``) every ``CHECKPOINT_EVERY`` steps, and ends the steps
    (``OutOfTime``) once ``deadline`` (the clock's time) has passed."""

    def __init__(self, log_file, t0: float, clock: Callable[[], float], on_step: Callable[[int, float], None] | None,
                 deadline: float | None, start: int, checkpoint: Callable[[int], None] | None = None) -> None:
        self.log_file, self.t0, self.clock, self.on_step, self.deadline = log_file, t0, clock, on_step, deadline
        self.checkpoint = checkpoint
        self.done = start
        self.losses: list[float] = []

    def __call__(self, step: int, loss: float) -> None:
        self.log_file.write(json.dumps({"total": loss, "step": step, "time": round(self.clock() - self.t0, 1)}) + "\n")
        self.log_file.flush()
        self.done = step
        self.losses.append(loss)
        if self.on_step is not None:
            self.on_step(step, loss)
        if self.checkpoint is not None and step % CHECKPOINT_EVERY == 0:
            self.checkpoint(step)
        if self.deadline is not None and self.clock() > self.deadline:
            raise OutOfTime


class OutOfTime(Exception):
    """A cached stage's steps ran out of their time (``--max-minutes``)."""


@contextmanager
def step_log(out: Path, t0: float, clock: Callable[[], float], on_step: Callable[[int, float], None] | None = None,
             *, deadline: float | None = None, on_stop: Callable[[int], None] | None = None,
             start: int = 0) -> Iterator[StepLog]:
    """A step callback (``StepLog``) that writes each step's loss to ``OUT/log.jsonl`` (``tools/log_summary.py``'s
    format; time: from ``t0``, the cache's time included) and passes it on to ``on_step``. Past ``deadline`` the
    steps end after the current one and the block goes on; stopped by Ctrl-C or SIGTERM (a ``KeyboardInterrupt``),
    ``on_stop(steps done)`` runs before the interrupt goes on, so that what was trained is kept (``finish``); it also
    runs every ``CHECKPOINT_EVERY`` steps, so that a run killed outright goes on from its last such step. A run
    going on from step ``start`` > 0 appends to the log."""
    with open(out / "log.jsonl", "a" if start else "w") as log_file:
        logged = StepLog(log_file, t0, clock, on_step, deadline, start, on_stop)
        try:
            yield logged
        except OutOfTime:
            pass
        except KeyboardInterrupt:
            if on_stop is not None:
                on_stop(logged.done)
            raise


def finish(trainer, stage: str | tuple[str, ...], steps: int) -> None:
    """The end of a cached stage's run: the EMA copy (what is exported) gets the trained ``stage`` (the model's
    attribute of that name, or each of several), the run stands at ``steps`` and its checkpoint is written."""
    if trainer.ema is not None:
        for name in (stage,) if isinstance(stage, str) else stage:
            getattr(trainer.ema, name).load_state_dict(getattr(trainer.model, name).state_dict())
    trainer.step = steps
    trainer.save()
