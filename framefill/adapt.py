"""``interp --adapt``: fine-tune film's learned stages on the video it is about to interpolate.

Every video carries its own training data: any three of its frames ``(i, i + 1, i + 2)`` are a drop-frame triplet
with a true middle (Choi et al., "Scene-Adaptive Video Frame Interpolation via Meta-Learning", CVPR 2020, fit a
network to them at test time). ``AdaptConfig.stage`` says what learns: the selector (``film_parts.Selector``: which of
warped frame 0, warped frame 1 and the blend each pixel takes; this module) or the motion refiner
(``framefill.adapt_refiner``). For the selector, everything before it runs without
autograd (``Film.selector_only``), so a step costs the selector's share. Weights without the stage get a fresh one
(zero head, so the model starts as the loaded weights).

What ``adapt_model`` does, within ``AdaptConfig.seconds`` of wall time (sampling and the guard included):
1. Sampling (``sample_runs``): up to ``max_frames`` frames of the input (its own frames only), in contiguous runs
   spread through it, so a long 1080p video is never held in memory whole; decoding stops early when a quarter of
   the budget is spent.
   The runs are then halved in size (``half_size``), so that the triplets' motion in pixels is that of the pairs
   the job interpolates.
2. Triplets ``(i, i + 1, i + 2)``, and ``(i, i + 2, i + 4)`` where a run is long enough, with static triplets,
   duplicated frames and scene cuts skipped (``train.data.valid_triplets``, the training set's rules).
3. Hold-out (the guard): every fifth triplet, deterministically, with no training triplet whose truth is a
   held-out truth. Both the loaded selector and the adapted one are scored on them (PSNR on 8-bit RGB, on the
   whole frame, or its centre up to ``guard_crop`` pixels a side), and the adapted weights are kept only where
   they score at least ``margin_db`` better on the input's own held-out frames.
4. A cache (``evidence``): what the selector chooses from (``Film.selector_evidence``: the warped frames, the blend,
   the rule, the fusion's residual, the selector's inputs) does not change while the selector learns, so it is
   computed once per crop, for the guard's crops and for the training crops (the most moving first, until
   ``cache_share`` of the budget); a training step and a guard score then cost the selector alone, tens of
   milliseconds, and the budget buys hundreds of steps instead of a few.
5. Training: random batches of the cached crops, mirrored at random, the selector's training losses
   (``train.loop.selector_terms``: robust L1, census, Laplacian, ``losses.choice_loss``), AdamW, until the budget
   less the guard's second turn.

Library code: progress goes to a callback ``progress(elapsed_s, budget_s)``; nothing prints.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from framefill.adapt_config import DEFAULT_SECONDS, NO_TIME, AdaptConfig, AdaptReport, guard_sets  # noqa: F401 (DEFAULT_SECONDS re-exported)
from framefill.adapt_data import (
    Triplet,
    crop_side,
    crop_triplet,
    find_triplets,
    half_size,
    hard_crops,
    sample_runs,
    split_holdout,
)
from framefill.adapt_refiner import adapt_refiner
from framefill.checkpoint import read_metadata, save_model
from framefill.eval_metrics import psnr
from framefill.frames import VideoError, check_parent
from framefill.models import load_model
from framefill.models.sharpen import sharpened
from framefill.pipeline import load_interpolator, prepare_interpolator
from framefill.resume import file_digest, input_identity
from framefill.train.loop import TrainConfig, selector_terms, to_uint8

log = logging.getLogger(__name__)
Progress = Callable[[float, float], None]

# --- the cache of what the selector chooses from ------------------------------------------------------------
EVIDENCE = ("candidates", "rule", "residual", "inputs")  # what a selector step needs of Film.selector_evidence


@torch.no_grad()
def evidence(model: torch.nn.Module, samples: list[np.ndarray], device: torch.device, batch: int = 4
             ) -> list[tuple[dict, torch.Tensor]]:
    """``model.selector_evidence`` of each sample ``(3, h, w, 3)`` uint8 (inputs, then the truth), in batches of
    samples of one size, kept on the CPU with the truth ``(3, h, w)``: everything before the selector, computed once,
    so that a selector step and a score of the guard cost the selector's share alone."""
    out = []
    for k in range(0, len(samples), batch):
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(s)).permute(0, 3, 1, 2) for s in samples[k:k + batch]])
        x = x.to(device).float() / 255
        t = torch.full((x.shape[0], 1, 1, 1), 0.5, device=device)
        ev = model.selector_evidence(x[:, 0], x[:, 1], t)
        gains = model.sharpen_gains(ev)
        if gains is not None:  # the sharpener is not adapted: cache its frames as the model makes them
            ev["candidates"] = sharpened(ev["candidates"], ev["bicubic"], gains, ev["blurred"])
        for i in range(x.shape[0]):
            one = {key: (tuple(c[i:i + 1].cpu() for c in ev[key]) if key == "candidates" else ev[key][i:i + 1].cpu())
                   for key in EVIDENCE}
            out.append((one, x[i, 2].cpu()))
    return out


def stack(items: list[tuple[dict, torch.Tensor]], device: torch.device) -> tuple[dict, torch.Tensor]:
    """A batch of cached evidence (``evidence``'s items, of one size) on ``device``."""
    k = len(items[0][0]["candidates"])  # 3, or 5 where the selector may choose the inputs as they are
    ev = {key: (tuple(torch.cat([e[key][c] for e, _ in items]).to(device) for c in range(k)) if key == "candidates"
                else torch.cat([e[key] for e, _ in items]).to(device)) for key in EVIDENCE}
    return ev, torch.stack([g for _, g in items]).to(device)


@torch.no_grad()
def guard_score(model: torch.nn.Module, cached: list[tuple[dict, torch.Tensor]], device: torch.device) -> float:
    """Mean PSNR (8-bit RGB, as ``framefill eval`` scores) of ``model``'s frames on cached held-out samples: the
    frozen part's evidence is the same for the loaded and the adapted selector, so only the selector is run."""
    scores = []
    for item in cached:
        ev, gt = stack([item], device)
        offset = model.selector.offset(ev)
        pred = model.compose(ev, offset)[0]
        scores.append(psnr(to_uint8(pred[0]), to_uint8(gt[0])))
    return float(np.mean(scores))


# --- the whole adaptation ------------------------------------------------------------------------------------
def adapt_model(src: Path, base: torch.nn.Module, *, device: torch.device, dtype: torch.dtype,
                cfg: AdaptConfig | None = None, in_fps: Fraction | None = None,
                progress: Progress | None = None) -> tuple[torch.nn.Module, AdaptReport]:
    """Fine-tune ``base``'s selector on ``src``'s own triplets (see the module docstring).

    ``base``: a film model in float32 (as ``models.load_model`` returns it), left unchanged. Returns the weights
    to interpolate with, in float32 on the CPU (the adapted model, or ``base`` itself when the guard kept it),
    and the report. ``device``: where the job runs (the adaptation runs there, in float32; ``dtype`` is the job's,
    which the cached evidence does not need).
    """
    cfg = cfg or AdaptConfig()
    if not hasattr(base, "with_selector"):
        raise ValueError(f"--adapt is for film models; {type(base).__name__} has no selector to adapt")
    t0 = time.perf_counter()

    def tick() -> None:
        if progress:
            progress(min(time.perf_counter() - t0, cfg.seconds), cfg.seconds)

    rng = np.random.default_rng(cfg.seed)
    full = sample_runs(src, max_frames=cfg.max_frames, max_bytes=cfg.max_bytes, run_length=cfg.run_length,
                       in_fps=in_fps, deadline=t0 + cfg.seconds / 4)
    runs = half_size(full, cfg.min_half_side)
    tick()
    train, held = split_holdout(find_triplets(runs), cfg.holdout_every)
    if len(train) < cfg.min_triplets or len(held) < cfg.min_held_out:
        return base, AdaptReport(kept=False, gain_db=None, held_out=0, triplets=0, steps=0,
                                 seconds=time.perf_counter() - t0,
                                 reason=f"{len(train) + len(held)} usable triplets in the input: too few to adapt on "
                                        f"and check (at least {cfg.min_triplets + cfg.min_held_out})")
    if cfg.stage == "refiner":
        return adapt_refiner(base, runs, full, train, held, cfg, device, rng, t0, tick)
    return adapt_selector(base, runs, full, train, held, cfg, device, rng, t0, tick)


def adapt_selector(base: torch.nn.Module, runs: list[np.ndarray], full: list[np.ndarray], train: list[Triplet],
                   held: list[Triplet], cfg: AdaptConfig, device: torch.device, rng: np.random.Generator, t0: float,
                   tick: Callable[[], None]) -> tuple[torch.nn.Module, AdaptReport]:
    """``adapt_model``'s work for the selector, from the sampled ``runs`` (halved where large; ``full`` at full size)
    and their ``train`` and ``held`` triplets, within ``cfg.seconds`` from ``t0``."""
    deadline, divisor = t0 + cfg.seconds, int(base.divisor)
    model = _trainable(base, cfg, device)
    guard, guard_full = (evidence(model, g, device, batch=1) for g in guard_sets(runs, full, held, cfg, divisor))
    before = guard_score(model, guard, device)
    before_full = guard_score(model, guard_full, device) if guard_full else None
    t_guard = time.perf_counter()
    tick()
    h, w = runs[0].shape[1:3]
    side = crop_side(h, w, cfg.crop, divisor)
    pool = hard_crops(runs, train, side, cfg.places, rng, keep=cfg.crops_per_triplet)[:cfg.max_crops]
    cached: list[tuple[dict, torch.Tensor]] = []
    fill_until = t0 + cfg.seconds * cfg.cache_share  # the rest of the budget trains on what is cached by then
    for k in range(0, len(pool), 4):  # the most moving crops first
        if not cfg.steps and cached and time.perf_counter() > fill_until:
            break
        cached += evidence(model, [crop_triplet(runs, *c, side) for c in pool[k:k + 4]], device)
        tick()
    # Robust L1 and the choice's target: census and the Laplacian pyramid would cost four times the selector's own
    # share at these sizes, and a choice between fixed candidates is what they would judge.
    log.info("sampled %d runs (%d triplets) and the guard's %d crops by %.1f s; cached %d training crops by %.1f s",
             len(runs), len(train) + len(held), len(guard), t_guard - t0, len(cached), time.perf_counter() - t0)
    tcfg = TrainConfig(selector=cfg.selector_filters, w_choice=cfg.w_choice, w_census=0.0, w_lap=0.0,
                       w_offset=cfg.w_offset)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
    stop = deadline - 0.5 - 0.05 * cfg.seconds  # the adapted weights' turn on the guard must fit too
    steps = 0
    while (steps < cfg.steps) if cfg.steps else (time.perf_counter() < stop):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (steps + 1) / cfg.warmup)
        ev, gt = _augment(*stack([cached[int(i)] for i in rng.integers(len(cached), size=cfg.batch)], device), rng)
        loss = selector_terms(model, ev, gt, tcfg)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.selector.parameters(), 1.0)
        opt.step()
        steps += 1
        if steps % 10 == 0:
            tick()
    if not steps:
        return base, AdaptReport(kept=False, gain_db=None, held_out=len(guard), triplets=len(train), steps=0,
                                 seconds=time.perf_counter() - t0, reason=NO_TIME)
    after = guard_score(model, guard, device)
    gain_full = guard_score(model, guard_full, device) - before_full if guard_full else None
    tick()
    adapted = model.cpu().eval()
    adapted.selector_only = False
    adapted.requires_grad_(False)
    out = AdaptReport.judged(cfg, after - before, gain_full, held_out=len(guard), triplets=len(train), steps=steps,
                             seconds=time.perf_counter() - t0)
    log.info("%s", out.summary())
    return (adapted if out.kept else base), out


def _augment(ev: dict, gt: torch.Tensor, rng: np.random.Generator) -> tuple[dict, torch.Tensor]:
    """The batch mirrored left-right at random (the whole batch at once: evidence and truth alike)."""
    if rng.random() < 0.5:
        return ev, gt
    flip = {key: (tuple(c.flip(-1) for c in v) if key == "candidates" else v.flip(-1)) for key, v in ev.items()}
    return flip, gt.flip(-1)


def _trainable(base: torch.nn.Module, cfg: AdaptConfig, device: torch.device) -> torch.nn.Module:
    """A float32 copy of ``base`` with a selector (a fresh one with a zero head where it has none), only the
    selector trainable and everything before it run without autograd."""
    model = copy.deepcopy(base).float().to(device)
    model = model.with_selector(cfg.selector_filters)
    model.requires_grad_(False)
    model.selector.requires_grad_(True)
    model.selector_only = True
    return model.train()


def check_adaptable(model: str, src: Path) -> None:
    """Refuse ``--adapt`` where it cannot run, before any work: film only, a video or a folder of frames."""
    if model != "film":
        raise ValueError(f"--adapt fine-tunes film's selector; it is not for --model {model}")
    if not (Path(src).is_dir() or Path(src).is_file()):
        raise VideoError(f"{src} does not exist; check the path")


# --- resumable jobs and fan-out ------------------------------------------------------------------------------
ADAPTED = "adapted.safetensors"  # the adapted weights in a job's work folder


def adapted_in_work(work: Path, src: Path, weights: Path, seconds: float,
                    make: Callable[[], tuple[torch.nn.Module, AdaptReport]]) -> tuple[Path, AdaptReport | None]:
    """The weights a resumable or fanned-out ``--adapt`` job interpolates with, as a file in its work folder, whose
    hash the manifest holds as the job's weights: the folder's own file when it was made for this input, these
    weights and this budget (a resumed run, another segment: report None), else ``make()``'s, put there.

    Segments that start at once on several machines each adapt, and the first file put in the folder wins (a hard
    link, which fails where the name exists): the others interpolate with it too, so every segment of a job uses
    one set of weights."""
    path = Path(work) / ADAPTED
    made_for = {"input": input_identity(src), "weights": file_digest(weights), "seconds": seconds}
    if _made_for(path) == made_for:
        return path, None
    model, rep = make()
    check_parent(Path(work))
    Path(work).mkdir(exist_ok=True)
    tmp = path.with_name(f".{ADAPTED}.{os.getpid()}.partial")
    save_model(tmp, model, architecture="film", extra={"adapted_for": made_for, "adaptation": rep.to_dict()})
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            if _made_for(path) != made_for:  # a stale file of another job: replaced
                os.replace(tmp, path)
                return path, rep
            rep = None  # another segment's adapted weights came first: this job uses those
    finally:
        tmp.unlink(missing_ok=True)
    return path, rep


def _made_for(path: Path) -> dict | None:
    """What an adapted weights file in a work folder was made for (None: no such file, or not one)."""
    if not path.is_file():
        return None
    try:
        return json.loads(read_metadata(path).get("adapted_for", "null"))
    except Exception:  # unreadable: made again
        return None


def adapt_for_job(src: Path, weights: Path, *, model: str, device: torch.device, dtype: torch.dtype, seconds: float,
                  in_fps: Fraction | None = None, work: Path | None = None, save: Path | None = None,
                  progress: Progress | None = None) -> tuple[torch.nn.Module, Path, str]:
    """``interp --adapt``: the model to interpolate with (on ``device`` in ``dtype``), the weights file that stands
    for the job's weights (``weights`` for a single run; for a resumable job or a segment, ``work``: the adapted
    file in its work folder, see ``adapted_in_work``) and the summary's clause (``AdaptReport.summary``).
    ``save``: also write the weights used there (the adapted ones, or ``weights``' where the guard kept those)."""
    base, _ = load_model(Path(weights), expect=model)  # float32, as the file holds it

    def make() -> tuple[torch.nn.Module, AdaptReport]:
        return adapt_model(src, base, device=device, dtype=dtype, cfg=AdaptConfig(seconds=seconds), in_fps=in_fps,
                           progress=progress)

    if work is None:
        chosen, report = make()
        if save is not None:
            save_model(Path(save), chosen, architecture=model, extra={"adaptation": report.to_dict()})
        return prepare_interpolator(chosen, device, dtype), Path(weights), report.summary()
    used, again = adapted_in_work(work, src, Path(weights), seconds, make)
    if save is not None:
        shutil.copyfile(used, save)
    note = again.summary() if again is not None else f"adapted: the weights in {used} (made by an earlier run)"
    return load_interpolator(model, used, device, dtype), used, note
