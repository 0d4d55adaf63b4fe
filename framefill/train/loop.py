"""The training loop: AdamW with warm-up and cosine decay, gradient clipping, an EMA of the weights,
periodic validation, checkpoints with exact resume, a JSON-lines log, and export to shipped weights.

Precision (``TrainConfig.precision``): ``fp32``, or the model's forward passes (and the critics') under
``torch.autocast`` in ``bf16`` or ``fp16``; fp16 scales the losses (``torch.amp.GradScaler``, one per
optimiser, checkpointed) so that small gradients do not flush to zero. Weights, optimiser states, the losses and
the models' geometry (flows, warps; see ``Film``) stay float32 either way. ``framefill train --precision auto``
picks bf16 on a CUDA device that has it (fp16 on older ones) and fp32 on the CPU.

Under torchrun (a process group already initialised, see ``framefill.train.distributed``) the model trains
with DistributedDataParallel: ``batch`` is the global batch, each rank trains on its share, and rank 0 alone
writes, validates and reports. Without a process group the loop is the single-process one, bit for bit.

Library code: progress goes through a callback; only the CLI draws it.

Why this module is long: ``TrainConfig`` and the ``Trainer`` are one unit (every field of the config is what a
checkpoint records and what an exact resume restores: model, EMA, optimisers, loss scalers, critics and the data
generator's state), and the loss terms and validation it calls are short functions beside it; split, a reader of
the resume logic would hold three files instead of one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from framefill.checkpoint import save_model
from framefill.evaluate import ssim
from framefill.models import build_model, load_model, refiner
from framefill.models.film_config import REFINER_LEVEL
from framefill.models.layers import box_filter, crop, grey, image_pyramid, pad_to_multiple, warp
from framefill.train import distributed
from framefill.train.data import DataConfig, find_clips, load_clip, sample_indices, valid_triplets, window_span
from framefill.train.gan import Critics, GanConfig, critic_loss, generator_loss
from framefill.train.losses import census, charbonnier, choice_loss, laplacian_l1, psnr
from framefill.train.sources import training_source
from framefill.train.synth import SynthConfig

log = logging.getLogger(__name__)
CPU = torch.device("cpu")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "film"  # architecture
    preset: str | None = None  # model preset (None: the architecture's default)
    steps: int = 20000  # total optimiser steps
    batch: int = 8  # triplets per step (the global batch: split over the ranks under torchrun)
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-5  # end of the cosine decay
    warmup: int = 300  # linear warm-up steps
    weight_decay: float = 1e-4
    clip_grad: float = 1.0
    ema: float = 0.999  # EMA decay of the weights (0 disables)
    w_census: float = 0.1  # census loss weight
    w_lap: float = 0.5  # Laplacian-pyramid L1 weight
    w_warp: float = 0.5  # robust L1 of each input warped to the middle, at every pyramid level (trains the flow)
    w_offset: float = 0.0  # film's selector trained alone: mean square of its logits' offset (stay near the rule)
    w_choice: float = 0.0  # film with a selector: cross-entropy toward the candidate closest to the truth
    # (losses.choice_loss: warped frame 0, warped frame 1 or the blend, per pixel)
    seed: int = 0
    precision: str = "fp32"  # autocast of the forward passes: fp32 (none), bf16, fp16 (with loss scaling)
    prefetch: bool = False  # build the next batch on a background thread while this one trains (CUDA: on)
    ckpt_every: int = 250  # steps between checkpoints
    val_every: int = 1000  # steps between validations (needs a val set)
    finetune: str | None = None  # start from these weights (safetensors) instead of random init
    fusion_cues: bool = False  # film: give the fusion the occlusion cues (Film.with_cues keeps the start's output)
    freeze_flow: bool = False  # film: train the fusion alone; the feature extractor and flow stay as they start
    # (no backward through the flow pyramid: a step costs about the fusion's share; the warp loss is skipped)
    selector: int = 0  # film: add a selector of this width (Film.with_selector: the start's output) and train it
    # alone; everything before it runs without autograd, so a step costs a forward pass and the selector's share
    selector_unwarped: bool = False  # film's selector may also choose the inputs as they are (Selector.widened)
    refiner: int = 0  # film: add a motion refiner of this width (Film.with_refiner: the start's output) and train it
    # alone on the output and toward the privileged motion (refiner_terms)
    lk_weights: int = 0  # film: add learned weights inside its Lucas-Kanade updates (Film.with_lk_weights: the start's
    # output) and train them alone toward exact and composed motion (lk_weight_terms)
    sharpen: int = 0  # film with a selector: add a sharpener of this width (Film.with_sharpener: the start's output)
    # and train it alone from the selector's cache (selector_cache)
    w_epe: float = 2.0  # refiner: weight of the end-point error to the exact motion (pixels at its level), and
    # REFINER_PRIVILEGED of it to the privileged motion where no exact one is known
    film_weights: str | None = None  # convlstm: its (frozen) film part from these film weights
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)  # synthetic triplets from photos, mixed in (synth.py)
    gan: GanConfig = field(default_factory=GanConfig)  # adversarial fine-tuning stage (gan.py), off by default

    def to_dict(self) -> dict:
        return asdict(self)


def initial_model(cfg: TrainConfig) -> torch.nn.Module:
    """The model a run starts from: the ``finetune`` weights or a fresh ``preset``, with the fusion cues added when
    asked (``Film.with_cues``: the same output until trained). Checkpoints hold the state of this model."""
    if cfg.finetune:
        model, _ = load_model(Path(cfg.finetune), expect=cfg.model)
    else:
        model = build_model(cfg.model, cfg.preset)
    if cfg.film_weights:
        model.load_film(Path(cfg.film_weights))
    stages = [name for name, on in (("--selector", cfg.selector), ("--refiner", cfg.refiner),
                                     ("--lk-weights", cfg.lk_weights), ("--sharpen", cfg.sharpen)) if on]
    if (cfg.fusion_cues or cfg.freeze_flow or stages) and not hasattr(model, "with_cues"):
        raise ValueError(f"--fusion-cues, --freeze-flow and film's learned stages (--selector ...) are for film, not "
                         f"{cfg.model}")
    if len(stages) > 1:
        raise ValueError(f"train film's {' and '.join(stages)} in separate runs: each trains alone")
    if cfg.fusion_cues:
        model = model.with_cues()
    if cfg.refiner:
        model = model.with_refiner(cfg.refiner)
    if cfg.lk_weights:
        model = model.with_lk_weights(cfg.lk_weights)
    if cfg.sharpen:
        if getattr(model, "selector", None) is None:
            raise ValueError("--sharpen needs film weights that have a selector (weights/film.safetensors)")
        model = model.with_sharpener(cfg.sharpen)
    return model.with_selector(cfg.selector, unwarped=cfg.selector_unwarped) if cfg.selector else model


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * p))


AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # TrainConfig.precision -> autocast dtype


def train_precision(spec: str, device: torch.device) -> str:
    """``--precision`` for training: ``auto`` is bf16 on a CUDA device with bf16, fp16 on an older one, and fp32
    on the CPU (where autocast runs, but the shipped recipes are float32); fp32, bf16 and fp16 as given."""
    spec = spec.strip().lower()
    if spec == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if spec not in AUTOCAST:
        raise ValueError(f"unknown precision {spec!r}; use auto, fp32, bf16 or fp16")
    return spec


def autocast(device: torch.device, precision: str):
    """The autocast context of a ``TrainConfig.precision`` on ``device`` (a no-op for fp32)."""
    if precision not in AUTOCAST:
        raise ValueError(f"precision must be one of {sorted(AUTOCAST)}, got {precision!r}")
    dtype = AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def loss_terms(model: torch.nn.Module, batch: torch.Tensor, cfg: TrainConfig, context: int = 2,
               keep: dict | None = None, times: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``batch``: ``(B, 3, 3, h, w)`` = (input 0, input 1, middle), or for a four-frame model (``context=4``)
    ``(B, 5, 3, h, w)`` = (I0, I1, I2, I3, middle of I1 and I2). Returns the named loss terms and total.
    ``times`` ``(B,)``: the truths' times between the two inputs (arbitrary-time film training); None: 0.5.

    Four-frame (convlstm) models add half the robust L1 of their synthesis stage (Suzuki et al.'s
    ``0.5 L1(synthesis) + L1(refined)``); film models the multi-scale warp term. ``keep``, if given, receives
    the prediction (``keep["pred"]``) for the adversarial stage."""
    gt = batch[:, -1]
    with autocast(gt.device, cfg.precision):  # the forward pass alone: the losses are computed in float32
        if context == 4:
            pred, aux = model(batch[:, :4], return_aux=True)
        elif times is not None:
            pred, aux = model(batch[:, 0], batch[:, 1], times, return_aux=True)
        else:
            pred, aux = model(batch[:, 0], batch[:, 1], return_aux=True)
    pred = pred.float()
    if keep is not None:
        keep["pred"] = pred
    terms = image_terms(pred, gt, cfg)
    if context == 4:
        terms["synth"] = 0.5 * charbonnier(aux["synth"].float(), gt)
    if cfg.w_warp and "flows" in aux and not (cfg.freeze_flow or cfg.selector):
        terms["warp"] = cfg.w_warp * warp_loss(aux["pyramid"], gt, aux["flows"], aux.get("time"))
    if cfg.w_choice and aux.get("choice") is not None:
        candidates = list(aux["candidates"])
        terms["choice"] = cfg.w_choice * choice_loss(aux["choice"], candidates, gt)
    terms["total"] = sum(terms.values())
    return terms


def image_terms(pred: torch.Tensor, gt: torch.Tensor, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The loss terms of a predicted frame against the truth: robust L1, census and Laplacian-pyramid L1."""
    terms = {"l1": charbonnier(pred, gt)}
    if cfg.w_census:
        terms["census"] = cfg.w_census * census(pred, gt)
    if cfg.w_lap:
        terms["lap"] = cfg.w_lap * laplacian_l1(pred, gt)
    return terms


def selector_terms(model: torch.nn.Module, ev: dict, gt: torch.Tensor, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """``loss_terms`` of a film model's selector alone, from a cache of what it chooses from (``ev``:
    ``Film.selector_evidence``, which does not depend on the selector): a step costs the selector's share only."""
    offset = model.selector.offset(ev)
    with torch.no_grad():  # a model with a sharpener: the frames as it makes them, the sharpener as it is
        gains = model.sharpen_gains(ev)
    pred, choice = model.compose(ev, offset, gains)
    terms = image_terms(pred, gt, cfg)
    if cfg.w_choice:
        terms["choice"] = cfg.w_choice * choice_loss(choice, list(ev["candidates"]), gt)
    if cfg.w_offset:
        terms["offset"] = cfg.w_offset * offset.square().mean()
    terms["total"] = sum(terms.values())
    return terms


REFINER_SIGMA = 0.02  # how much better (grey levels) the privileged motion must explain the truth to weigh fully
REFINER_REACH = 2.0  # the farthest privileged motion (pixels of the refiner's level, per axis) that it is trained on
REFINER_PRIVILEGED = 0.1  # the privileged target's weight against an exact one's: on clips of one set it taught a
# refiner that moved other clips' motion further from theirs, and exact motion generalised to other scenes


def refiner_terms(model: torch.nn.Module, batch: torch.Tensor, cfg: TrainConfig,
                  exact: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The loss of film's motion refiner alone (every other weight is frozen, so autograd tracks the refiner and
    what follows it): the model's frame against the truth (``image_terms``: what the output shows, through the
    fusion and the selector as they are), and the corrected motion against the privileged one
    (``refiner.privileged_motion``, the truth matched to each input) by a robust end-point error weighted per pixel
    by how much better the privileged motion explains the truth there than film's own (``epe``: through a warp a
    photometric loss has sub-pixel gradients only; this term says where a motion several pixels away is right.
    Where both explain it, in flat areas above all, any motion does and the privileged one says nothing: weight 0.
    Nor is a privileged motion more than ``REFINER_REACH`` away (per axis) a target: beyond its cost volume's reach,
    and there the privileged match is least certain to be the motion, repeated texture above all.) Where ``exact``
    ``(N, 4, H, W)`` (pixels of the frame; NaN where unknown) gives a sample's true motion (rendered scenes,
    ``Samples.motion``), that is its target instead, at every pixel and with 1 / ``REFINER_PRIVILEGED`` times the
    weight: the image terms' gradients through the fusion are noisy, and with the end-point term at a tenth of
    this weight, 1,000 steps had hardly moved the refiner (its frames scored film's to the hundredth)."""
    img0, img1, gt = batch[:, 0], batch[:, 1], batch[:, -1]
    with autocast(gt.device, cfg.precision):
        pred, aux = model(img0, img1, return_aux=True)
    terms = image_terms(pred.float(), gt, cfg)
    motion, delta = aux["refined"]["motion"], aux["refined"]["delta"]
    n = gt.shape[0]
    with torch.no_grad():
        target, weight = torch.zeros_like(motion), torch.ones_like(motion)
        known = torch.zeros(n, dtype=torch.bool, device=gt.device)
        if exact is not None:  # the true motion where known, at the refiner's level (a mean over its 4x4 pixels)
            scale = 2 ** REFINER_LEVEL
            true = torch.nn.functional.avg_pool2d(exact.float(), scale) / scale
            known = ~true.isnan().flatten(1).any(1)  # (N,): samples with an exact motion
            target = torch.where(known.view(-1, 1, 1, 1), true, target)
        rest = (~known).nonzero().flatten()  # the privileged target for the others only: it runs film's flow again
        if len(rest):
            pyr = aux["pyramid"][REFINER_LEVEL]  # (2N, 3, h, w): the inputs at the refiner's level
            target[rest], weight[rest] = _privileged_target(model, img0[rest], img1[rest], gt[rest],
                                                            torch.cat([pyr[:n][rest], pyr[n:][rest]]), motion[rest])
    terms["epe"] = cfg.w_epe * (weight * torch.sqrt((motion + delta - target).square() + 0.01)).mean()
    terms["total"] = sum(terms.values())
    return terms


def lk_weight_terms(model: torch.nn.Module, batch: torch.Tensor, exact: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The loss of film's learned Lucas-Kanade weights alone (``Film.with_lk_weights``; every other weight frozen):
    the robust end-point error (pixels of the frame) of both full-resolution flows, per sample, against

    - the exact motion of a rendered scene where ``exact`` ``(N, 4, H, W)`` (the truth's pixels' motion into frame
      0 then frame 1, NaN where unknown) gives it: each flow read where the truth's pixel is in its start frame;
    - elsewhere (clips), the flow composed through the true middle frame: film's parameter-free flows from each
      input to the truth and on to the other input (``compose_through``). Each half is half the motion, which the
      updates find more often than the whole. The inputs alone cannot show what the truth does, but where the
      direct flow misses a motion that two halves find, the weights can learn to find it too.

    Only flows are computed (a step costs the flow pyramid's forward and backward, and two forward passes for the
    composed target), not the fusion: a photometric loss through a warp has sub-pixel gradients only."""
    img0, img1, gt = batch[:, 0].float(), batch[:, 1].float(), batch[:, -1].float()
    n = img0.shape[0]
    flows = model.flow_pyramids(img0, img1)[3][0]  # (2N, 2, H, W): flow_10 then flow_01
    f10, f01 = flows[:n], flows[n:]
    known = torch.zeros(n, dtype=torch.bool, device=img0.device) if exact is None else ~exact.flatten(1).isnan().any(1)
    errors = []  # (error of flow_01, error of flow_10) per group of samples
    if known.any():
        m = exact[known].float()
        m0, m1 = m[:, :2], m[:, 2:]
        errors.append((warp(f01[known], m0) - (m1 - m0), warp(f10[known], m1) - (m0 - m1)))
    rest = ~known
    if rest.any():
        t01, t10 = compose_through(model, img0[rest], gt[rest], img1[rest])
        errors.append((f01[rest] - t01, f10[rest] - t10))
    per_sample = [0.5 * (torch.sqrt(a.square().sum(1) + 0.01).mean((1, 2)) + torch.sqrt(b.square().sum(1) + 0.01)
                         .mean((1, 2))) for a, b in errors]
    epe = torch.cat(per_sample).mean()
    return {"epe": epe, "total": epe}


@torch.no_grad()
def compose_through(model: torch.nn.Module, img0: torch.Tensor, mid: torch.Tensor, img1: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """flow_01 and flow_10 ``(N, 2, H, W)`` composed through ``mid``: film's parameter-free flows (``plain``) from
    each input to ``mid`` and from ``mid`` on to the other input, the second read where the first lands."""
    n = img0.shape[0]
    to_mid = model.flow_pyramids(img0, mid, plain=True)[3][0]  # flow_m0 (on mid's grid), flow_0m
    from_mid = model.flow_pyramids(mid, img1, plain=True)[3][0]  # flow_1m, flow_m1
    f_m0, f_0m, f_1m, f_m1 = to_mid[:n], to_mid[n:], from_mid[:n], from_mid[n:]
    return f_0m + warp(f_m1, f_0m), f_1m + warp(f_m0, f_1m)


def _privileged_target(model: torch.nn.Module, img0: torch.Tensor, img1: torch.Tensor, gt: torch.Tensor,
                       pyr: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``refiner_terms``' privileged target ``(N, 4, h, w)`` and its weight per motion channel, for samples whose
    inputs at the refiner's level are ``pyr`` ``(2N, 3, h, w)`` (frame 0's rows, then frame 1's) and whose motion
    before the refiner is ``motion``."""
    n = gt.shape[0]
    target = refiner.privileged_motion(model, img0, img1, gt)  # (N, 4, h, w)
    inputs, truth = grey(pyr), grey(image_pyramid(gt, REFINER_LEVEL + 1)[REFINER_LEVEL]).repeat(2, 1, 1, 1)
    best = warp(inputs, torch.cat([target[:, :2], target[:, 2:]]))
    now = warp(inputs, torch.cat([motion[:, :2], motion[:, 2:]]))
    gain = box_filter((now - truth).abs(), 3) - box_filter((best - truth).abs(), 3)  # (2N, 1, h, w)
    weight = REFINER_PRIVILEGED * (gain / REFINER_SIGMA).clamp(0, 1)
    weight = torch.cat([weight[:n], weight[n:]], dim=1).repeat_interleave(2, dim=1)  # per motion channel
    near = (target - motion).abs() <= REFINER_REACH  # within its cost volume's reach
    return target, weight * (near[:, :2].all(1, keepdim=True) & near[:, 2:].all(1, keepdim=True)).float()


def warp_loss(pyramid: list[torch.Tensor], gt: torch.Tensor, flows: list[torch.Tensor],
              time: torch.Tensor | None = None) -> torch.Tensor:
    """Each input warped to the truth's time by its share of the flow should be the truth, at every pyramid level.

    ``pyramid[j]`` is the model's own image pyramid ``(2N, 3, h_j, w_j)`` (frame 0 rows, then frame 1) and
    ``flows[j]`` ``(2N, 2, h_j, w_j)`` holds flow_10 then flow_01 (see ``Film``), so one warp serves both
    inputs. ``time`` ``(N, 1, 1, 1)`` (None: 0.5): frame 0 moves by ``t`` of its flow, frame 1 by ``1 - t``.
    Direct, multi-scale supervision of the flow, including the coarse levels where a pixel is a large motion.
    """
    levels = len(flows)
    pg = image_pyramid(gt, levels)
    scale = 0.5 if time is None else torch.cat([time, 1 - time])
    loss = gt.new_zeros(())
    for j in range(levels - 1):  # the coarsest level is a few pixels wide: too little to learn from
        warped = warp(pyramid[j], scale * flows[j])  # (2N, 3, h_j, w_j)
        loss = loss + 2 * charbonnier(warped, torch.cat([pg[j], pg[j]]))  # the sum of both inputs' means
    return loss / max(1, levels - 1)


def load_val(root: Path, cfg: DataConfig, per_clip: int = 2, stride_list: tuple[int, ...] = (1, 2),
             context: int = 2) -> list:
    """A fixed, small validation set: ``per_clip`` evenly spaced samples per clip and stride (triplets, or
    four-frame windows and their truth for ``context=4``)."""
    items = []
    span = window_span(context)
    for p in find_clips(root):
        frames = load_clip(p, DataConfig(max_side=cfg.max_side, max_frames=cfg.max_frames), None)
        for s in stride_list:
            starts = valid_triplets(frames, s, cfg, span)
            for i in starts[np.linspace(0, len(starts) - 1, per_clip).astype(int)] if len(starts) else []:
                trip = frames[sample_indices(int(i), s, context)]
                items.append((f"{Path(p).stem}_s{s}_{i}", torch.from_numpy(trip).permute(0, 3, 1, 2).float() / 255))
    return items


def predict(model: torch.nn.Module, sample: torch.Tensor) -> torch.Tensor:
    """The model's frame for one sample ``(F, 3, H, W)`` (inputs then truth; any size: padded and cropped back)."""
    x, hw = pad_to_multiple(sample[:-1], model.divisor)  # (F - 1, 3, Hp, Wp)
    if getattr(model, "context", 2) == 4:
        return crop(model(x.unsqueeze(0)), hw)
    return crop(model(x[0:1], x[1:2]), hw)


@torch.inference_mode()
def validate(model: torch.nn.Module, items: list) -> dict[str, float]:
    was_training = model.training  # the EMA copy stays in eval mode
    model.eval()
    device = next(model.parameters()).device  # val items are kept on the CPU
    scores, ssims = [], []
    for _, trip in items:
        trip = trip.to(device)
        pred = predict(model, trip)  # (1, 3, H, W)
        scores.append(float(psnr(pred, trip[-1:])[0]))
        ssims.append(ssim(to_uint8(pred[0]), to_uint8(trip[-1])))  # on 8-bit frames, as framefill eval scores
    model.train(was_training)
    nan = float("nan")
    return {"val_psnr": float(np.mean(scores)) if scores else nan, "val_ssim": float(np.mean(ssims)) if ssims else nan,
            "val_items": len(scores)}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8."""
    return x.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _backward_and_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                       params=None, clip: float | None = None) -> torch.Tensor | None:
    """Backward, optional gradient clipping (returns the norm), optimiser step; through ``scaler`` when given
    (fp16: the loss is scaled up for the backward pass, the gradients unscaled before clipping, and a step whose
    gradients overflowed is skipped while the scale comes down)."""
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    gnorm = torch.nn.utils.clip_grad_norm_(params, clip) if params is not None else None
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    return gnorm


class Trainer:
    """Owns the model, optimiser, EMA, data and RNG; ``run()`` trains to ``cfg.steps`` with checkpoints.

    ``model`` is the bare model (its state is what checkpoints and exports hold); ``net`` is what trains: the
    model itself, or its DistributedDataParallel wrapper when a process group is initialised.
    """

    def __init__(self, cfg: TrainConfig, data: Path | None, out: Path, *, val: Path | None = None,
                 device: torch.device = CPU, cache_dir: Path | None = None, photos: Path | None = None,
                 config_now: bool = True) -> None:
        self.cfg, self.out, self.device = cfg, Path(out), device
        self.rank, self.world = distributed.rank_and_world()
        self.share = distributed.share(cfg.batch, self.rank, self.world)  # checks that the ranks divide the batch
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.model = initial_model(cfg)
        divisor = int(getattr(self.model, "divisor", 1))
        if cfg.data.crop % divisor:
            raise ValueError(f"a crop of {cfg.data.crop} px (--crop) is not a multiple of {divisor}, the size "
                             f"{cfg.model}'s input must be a multiple of; give {cfg.data.crop // divisor * divisor}")
        if cfg.freeze_flow:
            for part in (self.model.extractor, self.model.flow):
                part.requires_grad_(False)
        if cfg.selector:  # the selector alone learns; what it chooses from is computed without autograd
            self.model.requires_grad_(False)
            self.model.selector.requires_grad_(True)
            self.model.selector_only = True
        if cfg.sharpen:  # the sharpener alone, after the selector (selector_cache trains it)
            self.model.requires_grad_(False)
            self.model.sharpener.requires_grad_(True)
            self.model.selector_only = True
        if cfg.refiner:  # likewise the refiner alone (what precedes it has no weight to train: no autograd there)
            if self.world > 1:
                raise ValueError("film's refiner trains in one process (its step is a few small convolutions)")
            self.model.requires_grad_(False)
            self.model.refiner.requires_grad_(True)
        if cfg.lk_weights:  # likewise the Lucas-Kanade weights alone, on the flows alone (lk_weight_terms)
            if self.world > 1:
                raise ValueError("film's Lucas-Kanade weights train in one process (their step calls the flow "
                                 "pyramid directly, not through DistributedDataParallel)")
            self.model.requires_grad_(False)
            self.model.flow.weights.requires_grad_(True)
        self.model.to(device).train()
        self.context = int(getattr(self.model, "context", 2))  # frames per sample the model reads
        if cfg.data.arbitrary_time:  # the model learns every time: its config (and so its export) says so
            if not hasattr(getattr(self.model, "config", None), "arbitrary_time"):
                raise ValueError(f"arbitrary-time training needs a model that takes a time; {cfg.model} is "
                                 "trained at t = 0.5 only")
            self.model.config = dataclasses.replace(self.model.config, arbitrary_time=True)
        self.ema = copy.deepcopy(self.model).eval() if cfg.ema else None
        self.net: torch.nn.Module = self.model
        if self.world > 1:  # DDP copies rank 0's weights to the others now and averages gradients in backward
            ids = [device.index] if device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        autocast(device, cfg.precision)  # checks the name
        fp16 = cfg.precision == "fp16"
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None  # the model's loss scale
        self.critics: Critics | None = None  # the --gan discriminators, their optimiser and their DDP wrapper
        if cfg.gan.enabled:
            self.critics = Critics(cfg.gan).to(device).train()
            self.opt_d = torch.optim.AdamW(self.critics.parameters(), lr=cfg.gan.lr, betas=(0.5, 0.999),
                                           weight_decay=0.0)
            self.critic_net: torch.nn.Module = self.critics
            self.scaler_d = torch.amp.GradScaler(device.type) if fp16 else None
            if self.world > 1:
                ids = [device.index] if device.type == "cuda" else None
                self.critic_net = torch.nn.parallel.DistributedDataParallel(self.critics, device_ids=ids)
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed)
        # With prefetch: (the generator's state after the batch being trained, the next batch being built).
        self._ahead: tuple[dict, Future] | None = None
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") if cfg.prefetch else None
        with distributed.main_first():  # rank 0 fills the clip cache, the others then read it
            self.dataset = training_source(data, photos, cfg.data, cfg.synth, cache_dir, context=self.context)
        self.val_items = load_val(Path(val), cfg.data, context=self.context) if val and self.is_main else []
        if config_now and self.is_main:  # (the CLI writes it once a resume has worked: write_config)
            self.write_config()

    def write_config(self) -> None:
        """``OUT/config.json``: this run's settings (written once the run has started or resumed)."""
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1, default=str))

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): the one that writes, validates and reports."""
        return self.rank == 0

    # --- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "opt": self.opt.state_dict(),
            "step": self.step,
            # one process's generator after the batches trained so far (not after one drawn ahead)
            "np_rng": self._ahead[0] if self._ahead is not None else self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "py_rng": random.getstate(),
            "config": self.cfg.to_dict(),
            "gan": {"critics": self.critics.state_dict(), "opt": self.opt_d.state_dict(),
                    "scaler": self.scaler_d.state_dict() if self.scaler_d else None} if self.critics else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
        }

    def save(self) -> Path:
        """Write ``OUT/last.pt`` (on rank 0 only: every rank holds the same state) and return its path."""
        path = self.out / "last.pt"
        if not self.is_main:
            return path
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        return path

    def load(self, path: Path) -> None:
        st = torch.load(path, map_location=self.device, weights_only=True)  # plain types only: no unpickling
        self.model.load_state_dict(st["model"])
        if self.ema and st.get("ema"):
            self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["opt"])
        self.step = int(st["step"])
        self.rng.bit_generator.state = st["np_rng"]
        self._ahead = None  # a batch drawn ahead from the old state is dropped
        torch.set_rng_state(st["torch_rng"].cpu())  # map_location moved it; the CPU generator needs a CPU tensor
        random.setstate(st["py_rng"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.critics is not None and st.get("gan"):  # a --gan run resumed (a plain checkpoint starts them fresh)
            self.critics.load_state_dict(st["gan"]["critics"])
            self.opt_d.load_state_dict(st["gan"]["opt"])
            if self.scaler_d is not None and st["gan"].get("scaler"):
                self.scaler_d.load_state_dict(st["gan"]["scaler"])

    def export(self, path: Path, extra: dict | None = None) -> None:
        """Write the (EMA) weights as safetensors; on rank 0 only."""
        if not self.is_main:
            return
        model = self.ema or self.model
        training = {"steps": self.step, "batch": self.cfg.batch, "crop": self.cfg.data.crop,
                    "strides": list(self.cfg.data.strides), "ema": self.cfg.ema, "device": str(self.device)}
        if self.cfg.data.motion_crops > 1:
            training["motion_crops"] = self.cfg.data.motion_crops
        if self.cfg.data.arbitrary_time:
            training["arbitrary_time"] = True
        if self.cfg.precision != "fp32":
            training["precision"] = self.cfg.precision
        if self.world > 1:
            training["processes"] = self.world
        if self.cfg.synth.ratio and "photos" in self.dataset.summary():  # synthetic triplets were mixed in
            training["synthetic"] = self.cfg.synth.ratio
        if self.critics is not None:
            training["gan"] = self.cfg.gan.weight
        save_model(path, model, architecture=self.cfg.model, extra={"training": training, **(extra or {})})

    # --- the loop ----------------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor, times: torch.Tensor | None = None,
                   motion: torch.Tensor | None = None) -> dict[str, float]:
        """One optimiser step on ``batch`` (see ``loss_terms``); ``times`` ``(B,)`` are the truths' times, used
        when the model trains at arbitrary times (else every truth is the middle frame); ``motion`` ``(B, 4, h, w)``:
        the exact motion of each truth into its inputs, NaN where unknown (film's refiner's target)."""
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.cfg)
        batch = batch.to(self.device)
        times = times.to(self.device) if times is not None and self.cfg.data.arbitrary_time else None
        keep: dict = {}
        if self.cfg.refiner:
            terms = refiner_terms(self.model, batch, self.cfg, None if motion is None else motion.to(self.device))
        elif self.cfg.lk_weights:
            terms = lk_weight_terms(self.model, batch, None if motion is None else motion.to(self.device))
        else:
            terms = loss_terms(self.net, batch, self.cfg, self.context, keep, times)
        if self.critics is not None:  # the model's adversarial term (the bare critics: their grads are dropped)
            before, after = self._around(batch)
            with autocast(self.device, self.cfg.precision):
                fake = self.critics(before, keep["pred"], after)
            terms["adv"] = self.cfg.gan.weight * generator_loss([f.float() for f in fake], self.critics.weights())
            terms["total"] = terms["total"] + terms["adv"]
        self.opt.zero_grad(set_to_none=True)
        gnorm = _backward_and_step(terms["total"], self.opt, self.scaler, self.model.parameters(),
                                   self.cfg.clip_grad)
        if self.critics is not None:
            terms["critic"] = self._critic_step(batch, keep["pred"].detach())
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    e.lerp_(p, 1 - self.cfg.ema)
        self.step += 1
        terms = distributed.mean_over_ranks(terms)  # the whole global batch's loss, as one process logs it
        return {k: float(v.detach()) for k, v in terms.items()} | {"gnorm": float(gnorm),
                                                                   "lr": lr_at(self.step - 1, self.cfg)}

    def _around(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two frames either side of the gap: (input 0, input 1), or (I1, I2) of a four-frame window."""
        return (batch[:, 0], batch[:, 1]) if self.context == 2 else (batch[:, 1], batch[:, 2])

    def _critic_step(self, batch: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """One discriminator update on real tuples against the model's; real and fake in one forward pass (one
        pass per backward, as DistributedDataParallel wants)."""
        before, after = self._around(batch)
        n = batch.shape[0]
        with autocast(self.device, self.cfg.precision):
            logits = self.critic_net(before.repeat(2, 1, 1, 1), torch.cat([batch[:, -1], pred]),
                                     after.repeat(2, 1, 1, 1))
        logits = [x.float() for x in logits]
        loss = critic_loss([x[:n] for x in logits], [x[n:] for x in logits], self.critics.weights())
        self.opt_d.zero_grad(set_to_none=True)  # also drops what the model's step left in the critics
        _backward_and_step(loss, self.opt_d, self.scaler_d)
        return loss.detach()

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """This rank's share of the next global batch: the frames ``(B / W, F, 3, c, c)`` (F: 3, or 5 for
        four-frame models) and the truths' times ``(B / W,)`` (all 0.5 unless training at arbitrary times); for
        film's refiner and Lucas-Kanade weights also the exact motions ``(B / W, 4, c, c)`` (NaN where the source
        does not know them).

        Every rank draws the whole global batch's random choices, so the RNG streams advance as one process's do
        (see ``framefill.train.distributed``), and builds only its share. With ``cfg.prefetch`` the following batch
        is drawn at once and built on a background thread while this one trains, so that a GPU does not wait for
        the cropping and rendering; the batches are the same, and checkpoints hold the generator's state from
        before the batch drawn ahead, so a resumed run draws it again.
        """
        if self._builder is None:
            return self._build(self._draw())
        if self._ahead is None:
            self._ahead = self._draw_ahead()
        batch = self._ahead[1].result()
        self._ahead = self._draw_ahead()  # the following batch: drawn now, built while this one trains
        return batch

    def _draw(self) -> list:
        draws = [self.dataset.draw(self.rng) for _ in range(self.cfg.batch)]  # cheap: random choices only
        return draws[self.share]

    def _build(self, draws: list) -> tuple[torch.Tensor, ...]:
        samples = [self.dataset.build(d) for d in draws]  # the pixel work, for this rank's share alone
        batch = torch.stack([x for x, _ in samples]), torch.tensor([t for _, t in samples], dtype=torch.float32)
        if not (self.cfg.refiner or self.cfg.lk_weights):
            return batch
        # The refiner's exact targets where the source knows them (rendered scenes), NaN where it does not (clips).
        known = [self.dataset.motion(d) for d in draws]
        blank = torch.full((4, *batch[0].shape[-2:]), float("nan"))
        return *batch, torch.stack([blank if m is None else m for m in known])

    def _draw_ahead(self) -> tuple[dict, Future]:
        state = self.rng.bit_generator.state  # what a checkpoint taken before this batch is used must hold
        return state, self._builder.submit(self._build, self._draw())

    def run(self, *, max_seconds: float | None = None, on_step: Callable[[int, dict], None] | None = None) -> None:
        """Train to ``cfg.steps``. Under torchrun every rank calls it; ``on_step`` runs on every rank."""
        logf = open(self.out / "log.jsonl", "a") if self.is_main else None
        t0 = time.time()
        try:
            while self.step < self.cfg.steps:
                rec = self.train_step(*self.next_batch())
                rec["step"] = self.step
                rec["time"] = round(time.time() - t0, 1)
                if self.val_items and self.step % self.cfg.val_every == 0:
                    rec.update(validate(self.ema or self.model, self.val_items))
                if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                    self.save()
                if logf is not None:
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                if on_step:
                    on_step(self.step, rec)
                out_of_time = max_seconds is not None and time.time() - t0 > max_seconds
                if max_seconds is not None and self.world > 1:  # rank 0's clock decides for all ranks
                    out_of_time = distributed.from_main(out_of_time, self.device)
                if out_of_time:
                    self.save()
                    break
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            if logf is not None:
                logf.close()
