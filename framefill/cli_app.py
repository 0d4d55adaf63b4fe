"""The ``framefill`` app that every command module registers on: its error policy, the options several commands
share, and the helpers that draw progress and tables (``framefill.cli`` puts the commands together).

Every expected failure (bad input, a missing file, an existing output, no CUDA...) ends in one
``error: ...`` line on stderr and exit code 2 (bad usage or input) or 1 (a failure while running); Ctrl-C
(SIGINT) ends in 130, SIGTERM (``kill``, ``timeout``, SLURM, systemd, ``docker stop``) in 143 and SIGHUP (the
terminal closed) in 129, the codes a shell and a scheduler expect (128 + the signal's number), all after cleaning up
as any failure does. The policy lives in
the app itself (``_App.main``), so the ``framefill`` script, ``python -m framefill`` and
``typer.testing.CliRunner`` all behave alike. Set ``FRAMEFILL_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import os
import re
import signal
import sys
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperCommand, TyperGroup

from framefill import __version__

err = Console(stderr=True)
out = Console()  # stdout: the tables of eval and bench are those commands' result


class UsageError(Exception):
    """Bad usage or input: exit code 2."""


STOP_MESSAGES = {signal.SIGTERM: "terminated",
                 **({signal.SIGHUP: "hung up (the terminal closed)"} if hasattr(signal, "SIGHUP") else {})}
_stopped_by: list[int] = []  # the signal ``stop_on_signal`` turned into the KeyboardInterrupt that ended a command


def stop_on_signal(signum: int, frame: object) -> None:
    """A handler for SIGTERM and SIGHUP: unwind as Ctrl-C does (a ``KeyboardInterrupt``, so every ``finally`` stops
    ffmpeg and removes what is half-written; a signal's default action would end Python without unwinding), and
    remember the signal, so that the command ends in its own exit code (143, 129), not Ctrl-C's."""
    _stopped_by.append(signum)
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Install ``stop_on_signal`` for SIGTERM, and for SIGHUP where it is not ignored (``nohup`` ignores it: such a
    job goes on when the terminal closes)."""
    signal.signal(signal.SIGTERM, stop_on_signal)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, stop_on_signal)


class _App(TyperGroup):
    """framefill's error policy (see the module docstring) around every command, argument parsing included."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode or os.environ.get("FRAMEFILL_DEBUG"):  # the caller handles exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        _stopped_by.clear()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as e:
            message, code = _describe(e)
            if message:
                _error(message)
            sys.exit(code)
        if code == 130:  # typer turns Ctrl-C into Exit(130), which it returns when not standalone
            if _stopped_by:
                code = 128 + _stopped_by[0]
                _error(STOP_MESSAGES.get(_stopped_by[0], "terminated"))
            else:
                _error("interrupted")
        sys.exit(code if isinstance(code, int) else 0)


def _describe(e: Exception) -> tuple[str, int]:
    """The one line to print (empty: already shown) and the exit code for an exception that ended a command."""
    if isinstance(e, typer.TyperException):  # click's usage errors, as typer vendors them: exit code 2
        ctx = getattr(e, "ctx", None)
        message = e.format_message()  # empty for a bare `framefill`, whose help is already printed
        return (f"{message} (see {ctx.command_path} -h)" if message and ctx else message), e.exit_code
    if isinstance(e, UsageError | ValueError | FileNotFoundError):
        return str(e), 2
    from framefill.checkpoint import WeightsError  # only now: a usage error is reported without importing torch
    from framefill.frames import VideoError

    if isinstance(e, VideoError | WeightsError):
        return str(e), 2
    if isinstance(e, typer.Abort):
        return "aborted", 1
    return f"{type(e).__name__}: {e} (set FRAMEFILL_DEBUG=1 for the traceback)", 1


def _error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Command(TyperCommand):
    """A command whose usage line shows an argument's metavar as given (``PATHS...``), not ``{PATHS...}...``."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            is_named_argument = param.param_type_name == "argument" and param.metavar
            pieces += [param.metavar] if is_named_argument else param.get_usage_pieces(ctx)
        return pieces


def _flag(*names: str, **kwargs: Any) -> Any:
    """A boolean option; ``metavar=""`` keeps typer from labelling it ``<bool>`` in the help."""
    return typer.Option(*names, metavar="", **kwargs)


app = typer.Typer(
    name="framefill",
    cls=_App,
    help="Smooth video by frame interpolation: 24/30 fps to 60/120 fps or slow motion, on a CPU or a CUDA GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _parse_fps(text: str, option: str = "--fps") -> Fraction:
    from framefill.ffmpeg_banner import parse_rate

    try:
        return parse_rate(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"{option} {text!r} is not a frame rate; write 60, 59.94 or 60000/1001") from None


_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(text: str, option: str = "--max-memory") -> int:
    """``"2G"``, ``"512M"``, ``"1.5GiB"``, ``"800mb"``, ``"1048576"`` -> bytes (K, M, G, T are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", text.lower())
    if match is None:
        raise UsageError(f"{option} {text!r} is not a memory size; write e.g. 2G, 512M or 1.5GiB")
    value = int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])
    if value < 1:
        raise UsageError(f"{option} {text!r} is not a memory size above zero; write e.g. 2G or 512M")
    return value


# Options that several commands share.
MODELS = ("film", "convlstm")  # the architectures (framefill.models.architectures(), without importing torch)


def _known_model(name: str) -> str:
    if name not in MODELS:
        raise typer.BadParameter(f"{name!r} is not a model; choose {' or '.join(MODELS)}")
    return name


ModelOption = Annotated[str, typer.Option("--model", "-m", callback=_known_model,
                                          help="Interpolator: film (two frames) or convlstm (four).")]
WeightsOption = Annotated[Path | None, typer.Option("--weights", "-w", help="Weights file (.safetensors) instead of "
                                                    "the shipped ones.")]
DeviceOption = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or cuda:N.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA; bf16 on a CPU with native bf16 "
                                                                  "instructions, else fp32), fp32, fp16, "
                                                                  "bf16.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"framefill {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool | None, _flag("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = None,
) -> None:
    """framefill: frame interpolation for video."""



ALL_BASELINES = "repeat,blend,dis,minterpolate"  # framefill.evaluate.BASELINES, without importing torch


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str, option: str) -> tuple[int, ...]:
    """A comma list of positive whole numbers (``1,2``), or a UsageError naming ``option``."""
    try:
        values = tuple(int(part) for part in _csv(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"{option} {text!r} is not a list of positive whole numbers; write e.g. 1 or 1,2")
    return values


def _check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before a long run, an output file that could not be written at its end."""
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        what = "is a folder" if path.is_dir() else f"is in a folder that does not exist ({path.parent})"
        raise UsageError(f"{option} {path} {what}; give a file in an existing folder")


def _bar(label: str, quiet: bool) -> Progress:
    """A transient progress bar on stderr, only on a terminal (as interp's)."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                    TimeElapsedColumn(), console=err, transient=True, disable=quiet or not err.is_terminal)


def _show(table: Any) -> None:
    """Print a table on stdout; in a pipe or a file (80 columns by default) as wide as it needs, never squeezed."""
    if out.is_terminal:
        out.print(table)
    else:
        Console(width=Console(width=1000).measure(table).maximum).print(table)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
