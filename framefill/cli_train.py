"""``framefill train``: the training loop's options, single-process or under torchrun."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from framefill.cli_app import (
    DeviceOption,
    UsageError,
    _flag,
    err,
)


def checkpoint_problem(exc: Exception) -> str:
    """What is wrong with a checkpoint that did not load, in a few words."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("size mismatch" in text or "Missing key" in text
                                          or "Unexpected key" in text):
        return "it holds another model or preset than this run's (--model, --preset, --finetune)"
    return f"it is damaged or not a framefill checkpoint ({type(exc).__name__})"


def train(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option("--data", help="Folder of videos and/or frame folders to learn from "
                                              "(may be left out with --photos).", show_default=False)] = None,
    photos: Annotated[Path | None, typer.Option("--photos", help="Folder of still photos (searched recursively): "
                                                "synthetic triplets with an exact middle frame, from a moving camera "
                                                "and 0-3 moving cut-out sprites.", show_default=False)] = None,
    synthetic: Annotated[float | None, typer.Option("--synthetic", min=0.0, max=1.0, show_default=False,
                                                    help="Chance that a triplet is synthetic (from --photos), drawn "
                                                         "per triplet with the seeded RNG. Default: 0.3 with --photos "
                                                         "and --data, 1 with --photos alone, 0 without --photos.")
                         ] = None,
    drawn: Annotated[float | None, typer.Option("--drawn", min=0.0, max=1.0, show_default=False,
                                                help="Chance that a synthetic scene is drawn (line art and flat "
                                                     "colour, as animation is) instead of made of the photos. "
                                                     "Default: 0.25.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log, config.")] = Path("runs/film"),
    model: Annotated[str, typer.Option("--model", "-m", help="Architecture: film or convlstm.")] = "film",
    preset: Annotated[str | None, typer.Option(help="Model preset (film-s, film-m, film-tiny; convlstm-s, "
                                                    "convlstm-m, convlstm-tiny).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Held-out clips for periodic PSNR.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Total optimiser steps.")] = 5000,
    batch: Annotated[int, typer.Option(min=1, help="Triplets per step (under torchrun: in all, split over the "
                                                 "processes).")] = 8,
    crop: Annotated[int, typer.Option(min=32, help="Training crop size (pixels).")] = 160,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    max_frames: Annotated[int, typer.Option("--max-frames", min=3, help="Frames kept in RAM per clip.")] = 240,
    motion_crops: Annotated[int, typer.Option("--motion-crops", min=1, help="Crop places drawn per sample; the "
                                              "one with the most motion is kept (1: uniform crops).")] = 1,
    arbitrary_time: Annotated[bool, _flag("--arbitrary-time/--no-arbitrary-time", help="film: learn the frame at any "
                                          "time between the inputs (clips: frame i + j of inputs i and i + 2s, "
                                          "t = j / 2s; photos: t uniform in 1/8..7/8), so that interp asks for "
                                          "each output time directly instead of bisecting.")] = False,
    resume: Annotated[bool, _flag("--resume/--no-resume", help="Continue from OUT/last.pt if it exists.")] = True,
    finetune: Annotated[Path | None, typer.Option(help="Start from these weights (.safetensors).")] = None,
    film_weights: Annotated[Path | None, typer.Option("--film-weights", show_default=False,
                                                      help="convlstm: load its film part from these film weights "
                                                           "(weights/film.safetensors); film stays frozen.")] = None,
    fusion_cues: Annotated[bool, _flag("--fusion-cues/--no-fusion-cues", help="film: give the fusion occlusion cues "
                                       "(warp disagreement, the fallback weight, forward-backward consistency) and "
                                       "a say in the fallback; from --finetune weights without them, the model "
                                       "starts as those weights.")] = False,
    freeze_flow: Annotated[bool, _flag("--freeze-flow/--no-freeze-flow", help="film: train the fusion alone "
                                       "(features and flow kept as they start): a step costs the fusion's "
                                       "share.")] = False,
    selector: Annotated[int, typer.Option("--selector", min=0, help="film: add a learned selector of this width "
                                          "(16) between the warped frames and the blend, and train it alone; "
                                          "from --finetune weights without one, the model starts as those "
                                          "weights (0: no selector).")] = 0,
    unwarped: Annotated[bool, _flag("--unwarped/--no-unwarped", help="film with --selector: the selector may "
                                    "also choose either input as it is (held drawings, static detail); from "
                                    "weights whose selector cannot, it is widened and starts as it was.")] = False,
    refiner: Annotated[int, typer.Option("--refiner", min=0, help="film: add a learned refiner of this width (16) "
                                         "of where each input is read for the middle frame, and train it alone "
                                         "toward the motion film finds from the true middle frame; from "
                                         "--finetune weights without one, the model starts as those weights.")] = 0,
    lk_weights: Annotated[int, typer.Option("--lk-weights", min=0, help="film: add learned per-pixel weights of "
                            "this width (16) inside its Lucas-Kanade updates and train them alone toward the exact "
                            "motion of rendered scenes and, on clips, the flow composed through the true middle "
                            "frame; from --finetune weights without them, the model starts as those weights.")] = 0,
    selector_cache: Annotated[int, typer.Option("--selector-cache", min=0, help="film with --selector: train the "
                              "selector alone from a cache of this many crops (1500) of what it chooses from, "
                              "computed once, for --steps steps of --batch: a step costs the selector alone; "
                              "with --sharpen, the sharpener alone.")] = 0,
    sharpen: Annotated[int, typer.Option("--sharpen", min=0, help="film with a selector (the shipped weights): add "
                       "a learned sharpener of this width (16), which chooses per pixel how the warped frames are "
                       "resampled (bilinear, toward bicubic, toward a blur), and train it alone from "
                       "--selector-cache's crops; the model starts as the --finetune weights.")] = 0,
    gate: Annotated[int, typer.Option("--gate", min=0, help="convlstm: train its window-motion gate alone (the "
                  "rest frozen), from a cache of this many windows (1500), for --steps steps of --batch.")] = 0,
    residual_cache: Annotated[int, typer.Option("--residual-cache", min=0, help="convlstm: train its ConvLSTM "
                              "synthesis and attention refinement alone (film and the gate frozen), from a cache of "
                              "this many windows (1500) of film's gated frame and the aligned window, for --steps "
                              "steps of --batch.")] = 0,
    gate_reach: Annotated[float, typer.Option("--gate-reach", help="convlstm with --gate: the gate's widest "
                          "opening, in multiples of the correction the outer frames measure (1, 1.5, 2, ...).")] = 1.0,
    gate_level: Annotated[int | None, typer.Option("--gate-level", min=1, max=2, help="convlstm with --gate: the "
                          "gate's resolution, 1 / 2**LEVEL of the frame's (2: a quarter; 1: the half its flows are "
                          "estimated at); default: the preset's.")] = None,
    epe_weight: Annotated[float, typer.Option("--epe-weight", min=0.0, help="film with --refiner: weight of the "
                                              "end-point error toward the exact motion of rendered scenes (a tenth "
                                              "of it toward the privileged motion on clips).")] = 2.0,
    choice_weight: Annotated[float, typer.Option("--choice-weight", min=0.0, help="film with --selector: weight "
                                                 "of a per-pixel target for the selector (cross-entropy toward "
                                                 "whichever of warped frame 0, warped frame 1 and the blend is "
                                                 "closest to the truth there).")] = 0.05,
    strides: Annotated[str, typer.Option("--strides", help="Temporal strides of the clip triplets, comma-separated "
                                         "(larger: larger motion).")] = "1,2,3",
    gan: Annotated[bool, _flag("--gan/--no-gan", help="Adversarial fine-tuning: a per-frame and a frame-tuple "
                               "(3D-conv) discriminator, non-saturating loss, next to the usual losses. Meant "
                               "with --finetune: it trades some PSNR for sharper detail.")] = False,
    gan_weight: Annotated[float, typer.Option("--gan-weight", min=0.0, help="Weight of the adversarial term "
                                              "(with --gan).")] = 0.01,
    export: Annotated[Path | None, typer.Option(help="Write the final (EMA) weights here as .safetensors.")] = None,
    device: DeviceOption = "auto",
    precision: Annotated[str, typer.Option("--precision", help="Autocast of the forward passes: auto (bf16 on a "
                                           "CUDA GPU that has it, else fp16 there; fp32 on the CPU), fp32, bf16, "
                                           "fp16 (with loss scaling). Weights and losses stay float32.")] = "auto",
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop (with a checkpoint) after "
                                                      "this long; run again to resume.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Folder for decoded-clip caches (default OUT/cache).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train an interpolator on any folder of videos (drop-frame triplets at strides 1-3) and/or of photos.

    Checkpoints go to OUT/last.pt every 250 steps and on Ctrl-C; a second run with the same OUT resumes.
    Several GPUs or nodes: torchrun --nproc_per_node N -m framefill train ... (one process per GPU).
    """
    if data is None and photos is None:
        raise UsageError("nothing to learn from; give --data (videos) and/or --photos (still photos)")
    if film_weights is not None and model != "convlstm":
        raise UsageError(f"--film-weights loads the film part of convlstm; {model} has none (use --finetune)")
    if film_weights is not None and not film_weights.is_file():
        raise UsageError(f"--film-weights {film_weights} does not exist; check the path")
    if arbitrary_time and model != "film":
        raise UsageError(f"--arbitrary-time trains film; {model} reads four frames and is trained at t = 0.5 only")
    if (fusion_cues or freeze_flow or selector or refiner or lk_weights or sharpen) and model != "film":
        raise UsageError(f"--fusion-cues, --freeze-flow, --selector, --refiner and --lk-weights are for film, not "
                         f"{model}")
    if gate and model != "convlstm":
        raise UsageError(f"--gate trains convlstm's window-motion gate; {model} has none")
    if residual_cache and model != "convlstm":
        raise UsageError(f"--residual-cache trains convlstm's ConvLSTM and refinement stages; {model} has none")
    if residual_cache and gate:
        raise UsageError("--gate and --residual-cache each train alone: train them in separate runs")
    from framefill.train.window_gate import check_reach

    try:
        check_reach(gate_reach)
    except ValueError as exc:
        raise UsageError(f"--gate-reach: {exc}") from None
    stages = [name for name, on in (("--selector", selector), ("--refiner", refiner), ("--lk-weights", lk_weights),
                                    ("--sharpen", sharpen)) if on]
    if len(stages) > 1:
        raise UsageError(f"{' and '.join(stages)} each train alone: train them in separate runs")
    if selector_cache and not (selector or sharpen):
        raise UsageError("--selector-cache trains film's selector alone: give --selector too (16)")
    if sharpen and not (selector_cache and finetune):
        raise UsageError("--sharpen trains from a cache on weights that have a selector: give --selector-cache "
                         "(1500) and --finetune (weights/film.safetensors)")
    if unwarped and not selector:
        raise UsageError("--unwarped widens film's selector: give --selector too (16)")
    try:
        stride_list = tuple(int(x) for x in strides.split(","))
    except ValueError:
        stride_list = ()
    if not stride_list or min(stride_list) < 1:
        raise UsageError(f"--strides {strides!r} is not a comma-separated list of positive whole numbers (1,2,3)")
    for option, path in (("--data", data), ("--photos", photos)):
        if path is not None and not path.exists():
            raise UsageError(f"{option} {path} does not exist; check the path")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run (its checkpoints, log and config)")
    if export is not None and not export.parent.is_dir():
        raise UsageError(f"--export {export}: the folder {export.parent} does not exist; create it first")
    if max_minutes is not None and not 0 < max_minutes < float("inf"):
        raise UsageError(f"--max-minutes {max_minutes:g} is not a time limit; give a positive number of minutes")
    ratio = synthetic if synthetic is not None else 0.0 if photos is None else 0.3 if data else 1.0
    if ratio > 0 and photos is None:
        raise UsageError(f"--synthetic {ratio:g} needs --photos, a folder of photos to render triplets from")
    if drawn is not None and ratio == 0:
        raise UsageError(f"--drawn {drawn:g} is a share of the synthetic triplets, and there are none; give --photos")
    drawn = 0.25 if drawn is None else drawn
    if ratio < 1 and data is None:
        raise UsageError(f"--synthetic {ratio:g} leaves {1 - ratio:.0%} of the triplets to --data; give --data "
                         "or --synthetic 1")

    from framefill.train import distributed
    from framefill.train.data import DataConfig
    from framefill.train.gan import GanConfig
    from framefill.train.loop import TrainConfig, Trainer, train_precision
    from framefill.train.synth import SynthConfig

    launch = distributed.launch_from_env()  # torchrun's rank and world size; rank 0 of 1 without torchrun
    if batch % launch.world:
        if not launch.main:  # every rank finds this: rank 0 says it, the others wait so that torchrun, which
            time.sleep(2)  # stops all ranks once one has ended, does not stop rank 0 before it has said it
            raise typer.Exit(2)
        raise UsageError(f"--batch {batch} is the global batch and does not split evenly over {launch.world} "
                         f"processes; give a multiple of {launch.world}")
    dev = distributed.device_for(device, launch)
    ctx.with_resource(distributed.process_group(launch, dev))  # left when the command ends, however it ends
    say = err.print if launch.main else lambda *args, **kwargs: None  # rank 0 alone reports
    cfg = TrainConfig(model=model, preset=preset, steps=steps, batch=batch, lr=lr, seed=seed,
                      precision=train_precision(precision, dev), prefetch=dev.type == "cuda",
                      finetune=str(finetune) if finetune else None, fusion_cues=fusion_cues,
                      freeze_flow=freeze_flow, selector=selector, selector_unwarped=unwarped, w_choice=choice_weight,
                      refiner=refiner, lk_weights=lk_weights, sharpen=sharpen, w_epe=epe_weight,
                      film_weights=str(film_weights) if film_weights else None,
                      data=DataConfig(crop=crop, max_frames=max_frames, motion_crops=motion_crops,
                                      strides=stride_list,
                                      arbitrary_time=arbitrary_time),
                      synth=SynthConfig(ratio=ratio, drawn=drawn),
                      gan=GanConfig(enabled=gan, weight=gan_weight), val_every=500)
    made = not out.exists()  # a run folder this command makes is removed again if it fails before training
    try:
        trainer = Trainer(cfg, data, out, val=val, device=dev, cache_dir=cache or out / "cache", photos=photos,
                          config_now=False)
        last = out / "last.pt"
        if distributed.from_main(resume and last.exists(), dev):  # rank 0 decides, every rank loads
            if not last.exists():
                raise UsageError(f"rank {launch.rank} cannot see {last}; put --out on storage every node shares")
            try:
                trainer.load(last)
            except Exception as exc:  # damaged, or another model's: one line, and the run folder as it was
                raise UsageError(f"cannot resume from {last}: {checkpoint_problem(exc)}; give another --out, or "
                                 "--no-resume to start afresh over it") from None
            say(f"resumed from {last} at step {trainer.step}")
        if launch.main:
            trainer.write_config()
    except BaseException:
        if made and launch.main:
            shutil.rmtree(out, ignore_errors=True)
        raise
    summary = trainer.dataset.summary()
    where = f"{launch.world} processes ({dev.type}), {batch // launch.world} each" if launch.distributed else dev
    samples = "four-frame windows" if trainer.context == 4 else "triplets"
    what = [f"{summary['triplets']} {samples} from {summary['clips']} clips"] if summary.get("clips") else []
    if summary.get("photos"):
        what.append(f"{summary['photos']} photos ({ratio:.0%} of triplets synthetic, {drawn:.0%} of those drawn)")
    amp = "" if cfg.precision == "fp32" else f", {cfg.precision} autocast"
    say(f"training {model} on {' and '.join(what)}, {where}{amp}")
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err, disable=not launch.main) as progress:
        task = progress.add_task("train", total=steps, completed=trainer.step, info="")

        def on_step(step: int, rec: dict) -> None:
            info = f"loss {rec['total']:.4f}"
            if "val_psnr" in rec:
                info += f"  val {rec['val_psnr']:.2f} dB / SSIM {rec['val_ssim']:.4f}"
            progress.update(task, completed=step, info=info)

        try:
            if selector_cache:  # film's selector alone, from a cache of crops (framefill.train.selector_cache)
                from framefill.train.selector_cache import SelectorCacheConfig, run_selector_cache

                progress.update(task, info=f"caching {selector_cache} crops")
                run_selector_cache(trainer, SelectorCacheConfig(samples=selector_cache, steps=steps, batch=batch,
                                                                lr=lr, seed=seed),
                                   lambda step, loss: progress.update(task, completed=step, info=f"loss {loss:.4f}"),
                                   max_seconds=max_minutes * 60 if max_minutes else None)
            elif gate:  # convlstm's gate alone: its cache of windows, then its steps (framefill.train.window_gate)
                from framefill.train.window_gate import GateConfig, run_gate

                progress.update(task, info=f"caching {gate} windows")
                run_gate(trainer, GateConfig(samples=gate, steps=steps, batch=batch, lr=lr, seed=seed,
                                             reach=gate_reach, level=gate_level),
                         lambda step, loss: progress.update(task, completed=step, info=f"loss {loss:.4f}"),
                         max_seconds=max_minutes * 60 if max_minutes else None)
            elif residual_cache:  # convlstm's two residual stages alone (framefill.train.window_residual)
                from framefill.train.cached import CacheConfig
                from framefill.train.window_residual import run_residual

                progress.update(task, info=f"caching {residual_cache} windows")
                run_residual(trainer, CacheConfig(samples=residual_cache, steps=steps, batch=batch, lr=lr, seed=seed),
                             lambda step, loss: progress.update(task, completed=step, info=f"loss {loss:.4f}"),
                             max_seconds=max_minutes * 60 if max_minutes else None)
            else:
                trainer.run(max_seconds=max_minutes * 60 if max_minutes else None, on_step=on_step)
        finally:  # wherever the run stopped (done, --max-minutes, Ctrl-C or a scheduler's SIGTERM): the weights
            if export:  # of the step it reached, which its checkpoint also holds (on rank 0)
                trainer.export(export)
                say(f"exported {export} at step {trainer.step}")
    say(f"step {trainer.step}/{steps}; checkpoint {last}")
    if launch.distributed:  # leave the process group, then end without the interpreter's shutdown (see exit_now)
        ctx.close()
        distributed.exit_now(0)
