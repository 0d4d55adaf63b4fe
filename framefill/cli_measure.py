"""The measuring commands: ``framefill eval`` (drop-frame quality next to baselines) and ``framefill bench``
(speed and memory), with their tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from framefill.cli_app import (
    ALL_BASELINES,
    DeviceOption,
    ModelOption,
    PrecisionOption,
    UsageError,
    WeightsOption,
    _bar,
    _check_output_file,
    _counts,
    _csv,
    _flag,
    _num,
    _show,
    err,
    out,
)


def eval_(
    data: Annotated[Path, typer.Option("--data", show_default=False,
                                       help="A video; a folder of videos and/or frame folders; or a Middlebury "
                                            "(frame10, frame11, truth frame10i11) or Vimeo-90K (im1, im3, truth im2) "
                                            "layout. Folders are searched recursively.")],
    stride: Annotated[str, typer.Option("--stride", "-s", help="Drop-frame strides S, a comma list: inputs i and "
                                        "i+2S, truth i+S.")] = "1,2",
    max_triplets: Annotated[int, typer.Option("--max-triplets", "-n", min=1, help="Triplets per clip and stride, "
                                              "spread evenly through the clip.")] = 10,
    model: ModelOption = "film",
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    baselines: Annotated[str, typer.Option("--baselines", show_default=False,
                                           help="Baselines to compare with, a comma list, or none (default: all of "
                                                "repeat, blend, dis, minterpolate).")] = ALL_BASELINES,
    save: Annotated[Path | None, typer.Option("--save", help="Folder for one picture per triplet: the inputs, "
                                              "framefill's frame, the truth and the error (x4), side by side.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure here (per triplet, per clip, "
                                                  "per stride, overall; config, device, versions).")] = None,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score framefill and simple baselines on frames left out of real footage (the drop-frame protocol).

    Triplets (i, i+S, i+2S) are taken evenly through each clip: a method sees frames i and i+2S.
    It is scored on frame i+S: PSNR, SSIM (8-bit RGB) and IE (Middlebury's RMS interpolation error).
    Middlebury and Vimeo-90K triplets are scored as they come; static triplets are left out.
    Baselines: repeat (the first frame), blend (the mean), dis (OpenCV DIS flow), minterpolate (ffmpeg).

    \b
    framefill eval --data clips/                       every video and frame folder in clips/, strides 1 and 2
    framefill eval --data clip.mp4 --stride 1 --json scores.json --save pictures/
    framefill eval --data vimeo_triplet/sequences --baselines blend,dis
    """
    if not data.exists():
        raise UsageError(f"--data {data} does not exist; check the path")
    strides = _counts(stride, "--stride")
    chosen = [] if baselines.strip().lower() == "none" else _csv(baselines)
    _check_output_file(json_out, "--json")
    if save is not None and save.exists() and not save.is_dir():
        raise UsageError(f"--save {save} is a file; give a folder for the pictures")

    from framefill.bench import environment, write_json
    from framefill.checkpoint import read_metadata
    from framefill.evaluate import PROTOCOL, EvalConfig, evaluate
    from framefill.models import default_weights
    from framefill.pipeline import load_interpolator, resolve_device, resolve_dtype

    config = EvalConfig(strides=strides, max_triplets=max_triplets, baselines=tuple(chosen), save=save)
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    net = load_interpolator(model, weights, dev, dtype)
    with _bar("eval", quiet) as progress:
        task = progress.add_task("", total=None)
        report = evaluate(data, net, config, device=dev, dtype=dtype,
                          on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    for w in report.warnings:
        err.print(f"warning: {escape(w)}", highlight=False, soft_wrap=True)
    result = report.to_dict()
    for group, figures in result["groups"].items():
        _eval_table(group, figures["methods"])
    if json_out:
        path = Path(weights) if weights else default_weights(model)
        run = {"data": str(data.resolve()), "strides": list(strides), "max_triplets": max_triplets, "model": model,
               "weights": str(path.resolve()), "precision": str(dtype).removeprefix("torch."), "baselines": chosen,
               "save": str(save.resolve()) if save else None, "protocol": PROTOCOL}
        write_json(json_out, {"config": run, **environment(dev), "weights_metadata": read_metadata(path), **result})
        if not quiet:
            err.print(f"wrote {escape(str(json_out))}", highlight=False, soft_wrap=True)


def _eval_table(group: str, methods: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    stride = int(group.split()[-1]) if group.startswith("stride ") else 0
    title = f"{group}: inputs i and i+{2 * stride}, truth i+{stride}" if stride else "given triplets"
    table = Table(title=title, title_justify="left")
    for name in ("method", "PSNR dB", "SSIM", "IE", "s/frame", "n"):
        table.add_column(name, justify="left" if name == "method" else "right")
    best = {k: (max if k != "ie" else min)(m[k] for m in methods.values()) for k in ("psnr", "ssim", "ie")}
    for name, m in methods.items():
        cells = [f"[bold]{v}[/]" if m[k] == best[k] else v
                 for k, v in (("psnr", f"{m['psnr']:.2f}"), ("ssim", f"{m['ssim']:.4f}"), ("ie", f"{m['ie']:.2f}"))]
        table.add_row(name, *cells, f"{m['sec_median']:.3f}", str(m["n"]))
    _show(table)


def bench(
    device: DeviceOption = "auto",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Architecture to measure (default: every "
                                              "one).", show_default=False)] = None,
    preset: Annotated[list[str] | None, typer.Option("--preset", metavar="PRESET", show_default=False,
                                                     help="Preset(s), repeatable or a comma list (default: "
                                                          "all).")] = None,
    size: Annotated[list[str] | None, typer.Option("--size", metavar="WxH", show_default=False,
                                                   help="Frame size(s), repeatable or a comma list (default: 960x540,"
                                                        "1280x720,1920x1080, and 3840x2160 on CUDA).")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", show_default=False,
                                              help="Precisions, a comma list of fp32, bf16, fp16 (fp16 needs CUDA; "
                                                   "default: all three on CUDA; fp32 on the CPU, and bf16 where it has "
                                                   "native bf16 instructions).")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Frame pairs per model call, a comma list.")] = "1",
    compile_: Annotated[bool, _flag("--compile/--no-compile", help="Also time torch.compile'd models (reported "
                                    "as unavailable where compiling fails).")] = False,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed calls per measurement (the median "
                                        "is shown).")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls before them.")] = 2,
    e2e: Annotated[bool, _flag("--e2e/--no-e2e", help="Also time the whole interp path on a generated clip: "
                               "decode, model, encode.")] = True,
    e2e_frames: Annotated[int, typer.Option("--e2e-frames", min=2, help="Frames of that clip.")] = 8,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure here (all timings, memory, "
                                                  "config, device, versions).")] = None,
    quiet: Annotated[bool, _flag("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure speed and memory: each model alone (latency, frames/s, peak memory), and end to end.

    Presets without matching shipped weights run with random ones (speed does not depend on the weights).
    End to end: a generated clip through interp's own path (--factor 2), with the busy share of each stage.

    \b
    framefill bench                                     every preset and size on this machine's device
    framefill bench --preset film-s --size 1280x720 --repeat 10
    framefill bench --device cuda --dtype fp16,bf16 --batch 1,4 --compile --json bench.json
    """
    from framefill.bench import parse_size

    sizes = [parse_size(s) for text in size or [] for s in _csv(text) or [text]]
    batches = _counts(batch, "--batch")
    presets = [p for text in preset or [] for p in _csv(text)] or None
    _check_output_file(json_out, "--json")

    from framefill.bench import (
        BenchConfig,
        default_dtypes,
        default_sizes,
        environment,
        model_presets,
        run_bench,
        write_json,
    )
    from framefill.pipeline import resolve_device

    dev = resolve_device(device)
    config = BenchConfig(models=tuple(model_presets(model, presets)), sizes=tuple(sizes or default_sizes(dev)),
                         dtypes=tuple(_csv(dtype) if dtype else default_dtypes(dev)), batches=batches,
                         compile=compile_, repeat=repeat, warmup=warmup, e2e=e2e, e2e_frames=e2e_frames)
    with _bar("bench", quiet) as progress:
        task = progress.add_task("", total=config.steps())
        report = run_bench(config, dev, lambda done, total, what: progress.update(task, completed=done,
                                                                                  description=escape(what)))
    env = environment(dev)
    _bench_tables(report, env)
    if json_out:
        write_json(json_out, {"config": vars(config), **env, "model": [vars(r) for r in report.model],
                              "e2e": [vars(r) for r in report.e2e]})
        if not quiet:
            err.print(f"wrote {escape(str(json_out))}", highlight=False, soft_wrap=True)


def _bench_tables(report: Any, env: dict) -> None:
    from rich.table import Table

    d = env["device"]
    where = d.get("name") or f"{d['cpu']}, {d['torch_threads']} threads"
    table = Table(title=f"model alone on {d['type']} ({where}): median of the timed calls", title_justify="left")
    numbers = ("batch", "ms/call", "frames/s", "peak MB", "+MB", "B/px", "est B/px")
    for name in ("preset", "weights", "size", "dtype", "batch", "compile", "ms/call", "frames/s", "peak MB",
                 "+MB", "B/px", "est B/px", "status"):
        table.add_column(name, justify="right" if name in numbers else "left")
    for r in report.model:
        status = r.status if r.compile_seconds is None else f"{r.status} (compiled in {r.compile_seconds:.0f} s)"
        table.add_row(r.preset, r.weights, r.size, r.dtype, str(r.batch), "yes" if r.compiled else "no",
                      _num(r.ms_median, 1), _num(r.fps, 2), _num(r.peak_mb, 0), _num(r.rise_mb, 0),
                      _num(r.rise_bytes_per_px, 0), _num(r.est_bytes_per_px, 0), status)
    _show(table)
    kinds = sorted({r.memory_kind for r in report.model if r.memory_kind})
    out.print(f"memory: {'; '.join(kinds)}. +MB: the rise during the timed calls; B/px: that per pixel of one pair "
              "(reads low on the CPU, where the allocator reuses what the warm-up took); est B/px: what --max-memory "
              "plans with.", highlight=False, soft_wrap=True)
    if not report.e2e:
        return
    table = Table(title="end to end: generated clip, --factor 2, decode -> model -> encode", title_justify="left")
    for name in ("preset", "size", "dtype", "batch", "frames", "wall s", "out frames/s", "decode", "model",
                 "encode", "status"):
        table.add_column(name, justify="left" if name in ("preset", "size", "dtype", "status") else "right")
    for r in report.e2e:
        wall = r.stages.get("wall")
        shares = [f"{r.shares[k]:.0%}" if r.shares else "-" for k in ("decode", "model", "encode")]
        table.add_row(r.preset, r.size, r.dtype, str(r.batch), f"{r.frames_in} -> {r.frames_out}", _num(wall, 2),
                      _num(r.fps_out, 2), *shares, r.status)
    _show(table)
    out.print("decode / model / encode: busy time of each thread over the wall time; they overlap, the largest is "
              "the bottleneck. The encoder's flush after the last frame is in the wall time only.", highlight=False,
              soft_wrap=True)
