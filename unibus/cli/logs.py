"""Where unibus's log lines go when it runs as a command: stderr, through rich, so they stay
above the demo's live progress instead of tearing it."""

from __future__ import annotations

import logging

from rich.logging import RichHandler

from unibus.cli.failures import stderr

__all__ = ["LEVELS", "configure"]

LEVELS = ("debug", "info", "warning", "error", "critical")


class _CliHandler(RichHandler):
    """Marks the handler this module installed, so configuring twice replaces it."""


def configure(level: str) -> None:
    """Send the ``unibus`` loggers' records at ``level`` and above to stderr."""
    logger = logging.getLogger("unibus")
    for handler in [h for h in logger.handlers if isinstance(h, _CliHandler)]:
        logger.removeHandler(handler)
    handler = _CliHandler(console=stderr, show_time=False, show_path=False, markup=False,
                          rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
