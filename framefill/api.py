"""The Python API: the entry points ``import framefill`` offers, over the same library the command line uses.

``load_model`` loads an interpolator once (the shipped weights by name, or a weights file); ``interpolate_video``
turns a video or a folder of frames into a smoother video or folder of frames, like ``framefill interp IN OUT``;
``interpolate_pair`` makes one in-between frame of two images at any time ``t``, like ``framefill interp A B MID``.
Both take the model as a name, a path or a loaded model. Images are ``(H, W, 3)`` uint8 RGB arrays (``video.py``'s
convention) or image files. Nothing here prints: progress goes to a callback, notes to ``logging`` and the report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from framefill import interpolate as _interpolate
from framefill.checkpoint import WeightsError, read_metadata
from framefill.frames import read_image, transparency_note
from framefill.models import architectures
from framefill.pipeline import JobReport, load_interpolator, resolve_device, resolve_dtype
from framefill.pipeline import interpolate_video as _interpolate_video
from framefill.schedule import ScheduleConfig, slowmo_rates
from framefill.tiling import TileConfig
from framefill.video import EncodeOptions, as_rate

log = logging.getLogger(__name__)

ModelLike = str | os.PathLike | torch.nn.Module  # a shipped model's name, a weights file, or a loaded model
ImageLike = np.ndarray | str | os.PathLike  # an (H, W, 3) uint8 RGB array, or an image file
Rate = Fraction | int | float | str  # a frame rate: 60, 59.94, "60000/1001"


def load_model(weights: str | os.PathLike = "film", *, device: str = "auto", precision: str = "auto"
               ) -> torch.nn.Module:
    """An interpolation model ready for inference, from the shipped weights or from a weights file.

    Load it once and pass it as ``model=`` to ``interpolate_video`` and ``interpolate_pair`` for many calls.

    Args:
        weights: ``"film"`` (the default model) or ``"convlstm"`` for the shipped weights, or the path of a
            framefill ``.safetensors`` file (``framefill train --export``), which names its own architecture.
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: the precision of the convolutions: ``"auto"`` (fp16 on CUDA; bf16 on a CPU with native bf16
            instructions, else fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only).

    Returns:
        The model, in eval mode, on ``device`` in ``precision``.

    Raises:
        WeightsError: the file is missing, not a safetensors file, or not a framefill model.
        ValueError: an unknown device or precision, or CUDA asked for on a machine without it.

    Example:
        >>> model = framefill.load_model("film", device="cpu")  # doctest: +SKIP
    """
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    if isinstance(weights, str) and weights in architectures():
        return load_interpolator(weights, None, dev, dtype)
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights not found: {path} (give a .safetensors file, or one of {architectures()})")
    # The file names its architecture; an unknown one is reported by the loader as "not a framefill file".
    return load_interpolator(str(read_metadata(path).get("architecture")), path, dev, dtype)


def interpolate_video(src: str | os.PathLike, dst: str | os.PathLike, *, factor: int | None = None,
                      fps: Rate | None = None, slowmo: int = 1, model: ModelLike = "film", device: str = "auto",
                      precision: str = "auto", batch_size: int = 2, max_depth: int = 3, in_fps: Rate | None = None,
                      audio: bool = True,
                      scene_detect: bool = True, max_memory: int | None = None, encode: EncodeOptions | None = None,
                      overwrite: bool = False, progress: Callable[[int, int | None], None] | None = None,
                      adapt: bool | float = False, save_adapted: str | os.PathLike | None = None) -> JobReport:
    """Interpolate a video or a folder of frames into a video or a folder of frames (``framefill interp IN OUT``).

    The output is written beside ``dst`` and moved there only when the whole job succeeds; audio and subtitles are
    carried over. Frame counts and timing are as the README's "What to expect" says.

    Args:
        src: a video file, or a folder of PNG/JPEG frames (at ``in_fps``, default 30).
        dst: a video file (the container and codec follow the extension: .mp4, .mkv, .webm, .gif...) or a folder.
        factor: multiply the frame rate by this (2, 3, 4...). The default, when neither ``factor`` nor ``fps`` is
            given, is 2 (or ``slowmo``).
        fps: the output frame rate instead of ``factor`` (60, 59.94, ``"60000/1001"``).
        slowmo: slow motion: ``slowmo`` times the frames, played ``slowmo`` times slower at the rate ``factor`` or
            ``fps`` asks for (the input's own rate by default); audio and subtitles are left out.
        model: a shipped model's name, a weights file, or a model from ``load_model`` (which then sets the device
            and precision: leave ``device`` and ``precision`` at ``"auto"``).
        device: for a model loaded here, as in ``load_model``.
        precision: for a model loaded here, as in ``load_model``.
        batch_size: frame pairs per model call.
        max_depth: recursion depth for times that are not powers of two: they snap to a ``1 / 2**max_depth`` grid
            (models trained for t = 0.5 only).
        in_fps: the frame rate of a folder of frames, or one that overrides a video's.
        audio: carry audio and subtitles over.
        scene_detect: copy frames, never morph, across scene cuts.
        max_memory: the most memory one model call may use, in bytes (bigger frames run in overlapping tiles);
            ``None``: what the device has free.
        encode: encoder settings (``framefill.video.EncodeOptions``: codec, crf, preset, pix_fmt); ``None``: the
            default for ``dst``'s extension.
        overwrite: replace an existing ``dst``.
        progress: called as ``progress(frames_written, total_frames)`` once before the first frame and after each
            frame written; ``total_frames`` is ``None`` when the input's frame count is not known in advance.
        adapt: first fine-tune film's learned selector on ``src``'s own frames (``framefill interp --adapt``):
            ``True`` for the default budget (60 s), or a number of seconds. The adapted weights are used only where
            they score better on held-out triplets of ``src``; ``report.adaptation`` says which. The weights file
            is not changed.
        save_adapted: with ``adapt``, also write the weights the job used to this ``.safetensors`` file.

    Returns:
        The job's report: ``frames_in``, ``frames_out``, ``fps_in``, ``fps_out``, ``fps_play`` (slow motion),
        ``stats`` (model calls, duplicates, scene cuts, tiles), ``warnings`` and ``adaptation`` (with ``adapt``:
        a ``framefill.adapt.AdaptReport``; its ``summary()`` is interp's line).

    Raises:
        VideoError: unreadable input, an existing ``dst`` without ``overwrite``, an unwritable output...
        WeightsError: weights that are missing or unreadable.
        ValueError: options out of range (``factor`` < 2, ``fps`` not above the input's...).
    """
    if slowmo < 1:
        raise ValueError(f"slowmo must be a whole number >= 1, got {slowmo}")
    net, dev, dtype = _resolve_model(model, device, precision)
    adaptation = None
    if adapt is not False:
        net, adaptation = _adapted(Path(src), model, net, dev, dtype, adapt, in_fps, save_adapted)
    factor, target = slowmo_rates(factor, as_rate(fps) if fps is not None else None, slowmo)
    schedule = ScheduleConfig(factor=factor, fps=target, max_depth=max_depth, batch_size=batch_size,
                              detect_scenes=scene_detect, tiling=TileConfig(max_memory=max_memory))
    total: int | None = None

    def on_start(n: int | None, fps_in: Fraction, fps_out: Fraction) -> None:
        nonlocal total
        total = n
        if progress:
            progress(0, total)

    def on_progress(done: int) -> None:
        if progress:
            progress(done, total)

    report = _interpolate_video(Path(src), Path(dst), net, schedule, device=dev, dtype=dtype, encode=encode,
                                in_fps=as_rate(in_fps) if in_fps is not None else None, keep_audio=audio,
                                overwrite=overwrite, on_start=on_start, on_progress=on_progress, slowmo=slowmo)
    report.adaptation = adaptation
    return report


def _adapted(src: Path, model: ModelLike, net: torch.nn.Module, dev: torch.device, dtype: torch.dtype,
             adapt: bool | float, in_fps: Rate | None, save: str | os.PathLike | None
             ) -> tuple[torch.nn.Module, object]:
    """``interpolate_video(adapt=...)``: the model to interpolate with and the adaptation's report."""
    import copy

    from framefill.adapt import DEFAULT_SECONDS, AdaptConfig, adapt_model
    from framefill.checkpoint import save_model
    from framefill.models import default_weights
    from framefill.models import load_model as load_weights
    from framefill.pipeline import prepare_interpolator

    seconds = DEFAULT_SECONDS if adapt is True else float(adapt)
    if isinstance(model, torch.nn.Module):  # a loaded model: adapted from a float32 copy of it
        base = copy.deepcopy(model).float().cpu()
    else:  # from the file, in float32 as it holds the weights
        path = default_weights(str(model)) if str(model) in architectures() else Path(model)
        base = load_weights(path, expect="film")[0]
    chosen, report = adapt_model(src, base, device=dev, dtype=dtype, cfg=AdaptConfig(seconds=seconds),
                                 in_fps=as_rate(in_fps) if in_fps is not None else None)
    if save is not None:
        save_model(Path(save), chosen, architecture="film", extra={"adaptation": report.to_dict()})
    return (prepare_interpolator(chosen, dev, dtype) if report.kept else net), report


def interpolate_pair(a: ImageLike, b: ImageLike, t: float | Fraction = 0.5, *, model: ModelLike = "film",
                     device: str = "auto", precision: str = "auto", max_depth: int = 3,
                     max_memory: int | None = None) -> np.ndarray:
    """The frame at time ``t`` between two images (``framefill interp A B MID`` makes the one at 0.5).

    A model trained for t = 0.5 only (the shipped ``film``) reaches other times by recursive halving, snapped to
    the nearest 1/8 (``max_depth``); weights trained with ``--arbitrary-time`` are asked for ``t`` directly.

    Args:
        a: the first image: an ``(H, W, 3)`` uint8 RGB array or an image file (alpha is dropped, with a warning).
        b: the second image, of the same size.
        t: the time between them, in [0, 1]: 0 is ``a``, 1 is ``b``.
        model: a shipped model's name, a weights file, or a model from ``load_model`` (as in
            ``interpolate_video``).
        device: for a model loaded here, as in ``load_model``.
        precision: for a model loaded here, as in ``load_model``.
        max_depth: halvings at most: ``t`` snaps to a ``1 / 2**max_depth`` grid (models trained for t = 0.5 only).
        max_memory: the most memory one model call may use, in bytes (bigger images run in overlapping tiles).

    Returns:
        The in-between frame, an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        VideoError: an image file that is missing or unreadable.
        ValueError: images of different sizes or not ``(H, W, 3)``, or ``t`` outside [0, 1].
        WeightsError: weights that are missing or unreadable.
    """
    images = [_read(x) for x in (a, b)]
    net, dev, dtype = _resolve_model(model, device, precision)
    return _interpolate.interpolate_pair(images[0], images[1], net, t, max_depth=max_depth, device=dev, dtype=dtype,
                                         tiling=TileConfig(max_memory=max_memory))


def _read(image: ImageLike) -> np.ndarray:
    """An image argument as an array: arrays as given, files read as ``(H, W, 3)`` uint8 RGB."""
    if isinstance(image, np.ndarray):
        return image
    frame = read_image(Path(image))
    if note := transparency_note(Path(image)):
        log.warning("%s", note)
    return frame


def _resolve_model(model: ModelLike, device: str, precision: str) -> tuple[torch.nn.Module, torch.device, torch.dtype]:
    """The model, and the device and dtype it runs in: loaded here from a name or a path, or as ``load_model`` left
    it (its parameters say where)."""
    if not isinstance(model, torch.nn.Module):
        net = load_model(model, device=device, precision=precision)
    elif device != "auto" or precision != "auto":
        raise ValueError("device and precision are set when the model is loaded: pass them to framefill.load_model")
    else:
        net = model
    param = next(net.parameters())
    return net, param.device, param.dtype
