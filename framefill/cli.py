"""The ``framefill`` command line: a thin Typer layer over the library.

Every expected failure (bad input, a missing file, an existing output, no CUDA...) ends in one
``error: ...`` line on stderr and exit code 2 (bad usage or input) or 1 (a failure while running); Ctrl-C
ends in 130, SIGTERM in 143. The policy lives in the app itself (``_App.main``), so the ``framefill`` script,
``python -m framefill`` and ``typer.testing.CliRunner`` all behave alike. Set ``FRAMEFILL_DEBUG=1`` to see
the traceback instead.
"""

from __future__ import annotations

import logging
import os

from framefill.cli_app import UsageError, _Command, app, parse_memory, stop_on_signals
from framefill.cli_info import info
from framefill.cli_interp import interp, join
from framefill.cli_measure import bench, eval_
from framefill.cli_train import train

__all__ = ["UsageError", "app", "main", "parse_memory"]

# The commands, in the order -h lists them.
app.command(cls=_Command)(interp)
app.command(cls=_Command)(join)
app.command()(train)
app.command()(info)
app.command(name="eval", cls=_Command)(eval_)
app.command(cls=_Command)(bench)


class UserFormatter(logging.Formatter):
    """A log record as the commands' own notes read: ``warning: ...`` (``error: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main() -> None:
    """Entry point of ``framefill`` and ``python -m framefill``: logging as FRAMEFILL_LOG says, then the app."""
    level = os.environ.get("FRAMEFILL_LOG")
    if level:  # a developer's log: levels and module names
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    else:  # a user's: warnings as the commands print theirs
        logging.basicConfig(level="WARNING", format="%(message)s")
        logging.getLogger().handlers[0].setFormatter(UserFormatter())
    # kill, timeout, SLURM, systemd and `docker stop` send SIGTERM, which ends Python without unwinding and so
    # leaves a hidden partial output behind; turned into a KeyboardInterrupt it cleans up like Ctrl-C, and the app
    # ends in 143 (SIGHUP, the terminal closed, in 129; not under nohup, which ignores it).
    stop_on_signals()
    app()
