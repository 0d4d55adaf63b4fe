"""``interp --adapt``'s settings (``AdaptConfig``), its report (``AdaptReport``) and the guard's held-out samples,
shared by the selector's adaptation (``framefill.adapt``) and the refiner's (``framefill.adapt_refiner``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from framefill.adapt_data import Triplet, crop_side, crop_triplet

DEFAULT_SECONDS = 60.0  # --adapt's budget: about a minute, at most two on 2 CPU cores for a 720p clip
STAGES = ("selector", "refiner")  # what --adapt may fine-tune
NO_TIME = "no time for a training step within the budget; give more seconds"


@dataclass(frozen=True)
class AdaptConfig:
    seconds: float = DEFAULT_SECONDS  # wall-time budget: sampling, training and the guard
    selector_filters: int = 16  # width of the selector added to weights that have none (as the shipped recipe)
    crop: int = 160  # training crop side (rounded down to the model's multiple; whole frames when smaller)
    batch: int = 8  # crops per step
    lr: float = 1e-3  # AdamW learning rate (after a short warm-up)
    warmup: int = 5  # steps
    w_offset: float = 1e-3  # weight of the mean square of the selector's offset: it moves the rule only where the
    # input's triplets agree that it should (a frame or two of a camera clip lost up to 2 dB without it)
    w_choice: float = 0.05  # weight of losses.choice_loss, as in the selector's training
    max_frames: int = 120  # frames sampled from the input at most
    max_bytes: int = 1 << 30  # ... and at most this much RAM of them (a 1080p frame is 6 MiB)
    run_length: int = 24  # frames per contiguous run (a stride-2 triplet spans 5)
    holdout_every: int = 5  # every this-many-th triplet is held out for the guard
    guard_triplets: int = 12  # held-out triplets scored at most
    guard_crop: int = 640  # the guard's frames: whole (after halving) up to this side, else their centre
    margin_db: float = 0.1  # the adapted weights are kept only when this much better on the held-out triplets
    min_triplets: int = 32  # fewer training triplets than this: nothing adapted (a 24-frame clip's 11 were learned
    # by heart, and its 4 held-out ones said +0.6 dB where the frames it was scored on lost 0.8)
    min_held_out: int = 8  # ... nor with fewer held-out triplets than this
    places: int = 6  # crop places drawn per triplet; the most moving are trained on
    seed: int = 0
    steps: int = 0  # exactly this many steps, whatever the time (tests); 0: as many as the budget allows
    min_half_side: int = 128  # frames are halved (to the motion of the job's pairs) where this many pixels remain
    crops_per_triplet: int = 3  # the most moving places of each training triplet cached (distinct places)
    max_crops: int = 256  # training crops whose evidence is cached at most (the most moving first)
    cache_share: float = 0.45  # caching stops at this share of the budget (after one batch at least)
    stage: str = "selector"  # what is fine-tuned: the selector, or the motion refiner (framefill.adapt_refiner)
    refiner_filters: int = 16  # width of the refiner added to weights that have none (as the refiner runs')
    refiner_batch: int = 4  # the refiner's crops per step (a step is a whole forward pass: more steps, smaller ones)

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"the adaptation budget must be a positive number of seconds, got {self.seconds:g}")
        if self.stage not in STAGES:
            raise ValueError(f"unknown adaptation stage {self.stage!r}; use {' or '.join(STAGES)}")


@dataclass
class AdaptReport:
    """What an adaptation did; ``summary()`` is the line ``interp`` prints."""

    kept: bool  # the adapted weights are used (else the loaded ones)
    gain_db: float | None  # mean PSNR of adapted minus loaded weights on the held-out triplets (None: not scored)
    held_out: int  # held-out triplets scored
    triplets: int  # triplets trained on
    steps: int  # optimiser steps taken
    seconds: float  # wall time, sampling and guard included
    reason: str = ""  # why nothing was adapted (too few triplets...), empty otherwise
    gain_full_db: float | None = None  # the same on the held-out triplets at full size (None: not halved)

    @classmethod
    def judged(cls, cfg: AdaptConfig, gain: float, gain_full: float | None, *, held_out: int, triplets: int,
               steps: int, seconds: float) -> AdaptReport:
        """The report of an adaptation that trained and was scored: kept where it gained at least ``cfg.margin_db``
        on the held-out triplets halved, and at full size where they were halved."""
        kept = gain >= cfg.margin_db and (gain_full is None or gain_full >= cfg.margin_db)
        return cls(kept=kept, gain_db=gain, gain_full_db=gain_full, held_out=held_out, triplets=triplets, steps=steps,
                   seconds=seconds)

    def summary(self) -> str:
        if self.gain_db is None:
            return f"adapted: not kept ({self.reason})"
        full = "" if self.gain_full_db is None else f" ({self.gain_full_db:+.2f} at full size)"
        how = (f"{self.gain_db:+.2f} dB on {self.held_out} held-out triplets{full}; {self.steps} steps on "
               f"{self.triplets} triplets in {self.seconds:.0f} s")
        return f"adapted: {'kept' if self.kept else 'not kept'} ({how})"

    def to_dict(self) -> dict:
        return {"kept": self.kept, "gain_db": self.gain_db, "held_out": self.held_out, "triplets": self.triplets,
                "steps": self.steps, "seconds": round(self.seconds, 1), "reason": self.reason,
                "gain_full_db": self.gain_full_db}


# --- the guard -------------------------------------------------------------------------------------------------
def guard_set(runs: list[np.ndarray], held: list[Triplet], cfg: AdaptConfig, divisor: int) -> list[np.ndarray]:
    """At most ``cfg.guard_triplets`` held-out triplets, evenly spread, ``(3, h, w, 3)`` uint8 (inputs, then the
    truth): whole frames (cut to the model's multiple) up to ``cfg.guard_crop`` pixels a side, else their centre,
    so that the guard judges the frames as the job will use them, still parts and all."""
    if len(held) > cfg.guard_triplets:
        held = [held[int(k)] for k in np.linspace(0, len(held) - 1, cfg.guard_triplets)]
    h, w = runs[0].shape[1:3]
    side = crop_side(h, w, cfg.guard_crop, divisor)
    y, x = (h - side[0]) // 2, (w - side[1]) // 2
    return [crop_triplet(runs, t, y, x, side) for t in held]


def guard_sets(runs: list[np.ndarray], full: list[np.ndarray], held: list[Triplet], cfg: AdaptConfig, divisor: int
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The guard's samples of the held-out triplets (``guard_set``) from the ``runs`` as trained on, and from the
    ``full``-size ones where those were halved (half as many, smaller; else none).

    Halved, the held-out triplets have the job's motion but not its scale; at full size, its scale but twice its
    motion. Neither is the job's pairs (whose middle frames nobody has), so the adapted weights must do well on both."""
    small = dataclasses.replace(cfg, guard_triplets=cfg.guard_triplets // 2, guard_crop=cfg.guard_crop * 3 // 5)
    return guard_set(runs, held, cfg, divisor), (guard_set(full, held, small, divisor) if runs is not full else [])
