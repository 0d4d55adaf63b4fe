"""``framefill info``: what a weights file holds, or how interp reads a video or frame folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from framefill.cli_app import (
    UsageError,
)


def info(
    weights: Annotated[Path | None, typer.Argument(
        metavar="[PATH]", help="A weights file (default: the shipped ones), or a video or frame folder.")] = None,
) -> None:
    """Show what a weights file holds (architecture, config, training, measured quality), or how interp reads a
    video or frame folder (size, rate and its evenness, scan, colour, audio).

    \b
    framefill info                      the shipped weights
    framefill info runs/mine/model.safetensors
    framefill info clip.mp4             what interp will see in clip.mp4
    """
    import json

    from framefill.checkpoint import load_safetensors, read_metadata
    from framefill.models import NOT_SHIPPED, architectures, default_weights

    if weights is not None and weights.suffix.lower() == ".pt" and weights.is_file():
        raise UsageError(f"{weights} is a training checkpoint, not a weights file; export its weights (the command "
                         "that trained it, with --export FILE.safetensors) and give that file")
    if weights is not None and weights.suffix.lower() != ".safetensors" and weights.exists():
        _describe_input(weights)
        return
    files = [weights] if weights else [default_weights(a) for a in architectures()]
    for f in files:
        if weights is None and not f.exists() and f.stem in NOT_SHIPPED:
            typer.echo(f"{f.stem}: {NOT_SHIPPED[f.stem]}")
            continue
        if not f.exists():
            raise UsageError(f"{f} does not exist; name a weights file, a video or a frame folder: framefill info PATH")
        meta = read_metadata(f)
        tensors, _ = load_safetensors(f)
        typer.echo(f"{f}")
        typer.echo(f"  parameters: {sum(t.numel() for t in tensors.values()):,} ({f.stat().st_size / 1e6:.1f} MB)")
        for k, v in meta.items():
            try:
                v = json.dumps(json.loads(v))
            except ValueError:
                pass
            typer.echo(f"  {k}: {v}")


def _describe_input(path: Path) -> None:
    """``framefill info VIDEO``: what interp reads from a video file or frame folder."""
    from framefill.pipeline import uneven_timing
    from framefill.video import FrameSource

    with FrameSource(path) as source:
        i = source.info
    shown = f", shown as {round(i.width * i.sar)}x{i.height}" if i.sar != 1 else ""
    lines = [f"{path}", f"  picture: {i.width}x{i.height}{shown} ({i.codec})"]
    length = f", {i.duration:.2f} s" if i.duration is not None else ""
    count = f"{i.n_frames} at " if i.n_frames is not None else ""
    lines.append(f"  frames: {count}{i.fps} fps ({float(i.fps):.3f}){length}")
    if i.drift is not None:
        if uneven_timing(i):
            lines.append(f"  timing: variable frame rate: frames stray up to {i.drift:.2f} s from an even "
                         f"{float(i.fps):.3f} fps; interp places its outputs by their timestamps")
        else:
            lines.append("  timing: constant frame rate")
    if i.codec != "images":
        lines.append(f"  scan: {'interlaced (deinterlaced as it is read)' if i.interlaced else 'progressive'}; "
                     f"{i.bits} bits" + (" (kept with --codec libx265, .webm, or a 10-bit --pix-fmt)" if i.bits > 8
                                         else ""))
        read = f"; no matrix named, read as {i.matrix.upper().replace('BT', 'BT.')}" if i.matrix else ""
        lines.append(f"  colour: matrix {i.colour.matrix}, primaries {i.colour.primaries}, transfer "
                     f"{i.colour.transfer} (as the output is tagged){read}")
        lines.append(f"  audio: {'yes' if i.has_audio else 'no'}; subtitles: {'yes' if i.has_subtitles else 'no'}")
    for line in lines:
        typer.echo(line)
    for note in source.warnings:
        typer.echo(f"  note: {note}")
