"""``framefill interp --adapt``'s side of the command line: the budget read and checked before anything is loaded,
the adaptation under a progress bar, and the job identity of an adapted job."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from framefill.cli_app import UsageError, err


def adapt_identity(weights: Path, seconds: float) -> str:
    from framefill.resume import file_digest

    return f"adapted from {file_digest(weights)} for {seconds:g} s"


def finished(src: Path, dst: Path, net: Any, spec: Any) -> bool:
    from framefill.resume import finished_job

    return dst.is_file() and finished_job(src, dst, net, spec) is not None


def job_spec(weights: Path, *, model: str, dtype: Any, schedule: Any, encode: Any, in_fps: Any, audio: bool, slow: int,
             ident: str | None) -> Any:
    from framefill.resume import JobSpec

    return JobSpec(model, weights, dtype, schedule, encode, in_fps, audio, slow, weights_id=ident)


def adapt_budget(adapt: bool, seconds: str | None, save: Path | None, paths: list[Path], model: str) -> float | None:
    """``--adapt``'s budget in seconds (None: no adaptation), checked before anything is loaded."""
    if seconds is None and not adapt:
        if save is not None:
            raise UsageError("--save-adapted keeps the weights --adapt makes; add --adapt")
        return None
    if save is not None and not save.parent.is_dir():
        raise UsageError(f"--save-adapted {save}: the folder {save.parent} does not exist; create it first")
    value = 60.0 if seconds is None else _budget(seconds)  # framefill.adapt.DEFAULT_SECONDS (a test checks)
    if len(paths) == 3:
        raise UsageError("--adapt learns from the triplets of a video or a folder of frames; a pair has none")
    if model != "film":
        raise UsageError(f"--adapt fine-tunes film's learned selector; it is not for --model {model}")
    return value


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--adapt-seconds takes a number of seconds (such as 60), not {text!r}") from None
    if not 0 < value < float("inf"):
        raise UsageError(f"--adapt-seconds must be more than 0 seconds, not {text}; give for instance 60")
    return value


def adapted(src: Path, weights: Path, model: str, dev: Any, dtype: Any, seconds: float, in_fps: Fraction | None,
             work: Path | None, quiet: bool, save: Path | None) -> tuple[Any, Path, str]:
    """``--adapt`` with a bar (``framefill.adapt.adapt_for_job``): the model, the job's weights file, the summary's
    clause."""
    from framefill.adapt import adapt_for_job

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=err,
                   transient=True, disable=quiet or not err.is_terminal)
    with bar:
        task = bar.add_task(f"adapting to {escape(src.name)}", total=seconds)
        return adapt_for_job(src, weights, model=model, device=dev, dtype=dtype, seconds=seconds, in_fps=in_fps,
                             work=work, save=save, progress=lambda done, total: bar.update(task, completed=done))
