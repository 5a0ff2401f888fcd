"""How the CLI reports failure: one red line on stderr and an exit status, never a traceback.

Exit status 1 means unibus refused or failed (the message says what to do); 2 is a usage
error on the command line; 130 an interrupt.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from unibus.errors import UnibusError

__all__ = ["fail", "reports_errors", "stderr"]

P = ParamSpec("P")
R = TypeVar("R")

stderr = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as one red line and exit with ``code``."""
    line = " ".join(message.split())  # e.g. YAML parse errors span several lines
    stderr.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    raise typer.Exit(code)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn unibus errors and Ctrl-C in ``command`` into one line and an exit status."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except UnibusError as exc:
            fail(str(exc) or type(exc).__name__)
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper
