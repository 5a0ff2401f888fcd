"""The ``unibus`` command: one Typer app; each command lives in its own module."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from unibus.cli import capabilities, config, consume, demo, dlq, logs, publish
from unibus.cli.failures import fail
from unibus.cli.logs import LEVELS
from unibus.errors import UnibusError

__all__ = ["app", "main"]

app = typer.Typer(
    name="unibus",
    help="One producer / consumer / dead-letter interface over many brokers.\n\n"
         "Exit status: 0 ok, 1 unibus refused or failed (the message says why), 2 usage error.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
@app.callback()
def root(
    log_level: Annotated[str, typer.Option(
        envvar="UNIBUS_LOG_LEVEL",
        help=f"Show unibus log lines at this level and above: {', '.join(LEVELS)}.")
    ] = "warning",
) -> None:
    """One producer / consumer / dead-letter interface over many brokers."""
    if log_level.lower() not in LEVELS:
        raise typer.BadParameter(f"use one of {', '.join(LEVELS)}", param_hint="--log-level")
    logs.configure(log_level)


app.command()(capabilities.capabilities)
app.command()(publish.publish)
app.command()(consume.consume)
app.command()(demo.demo)
app.add_typer(config.app, name="config")
app.add_typer(dlq.app, name="dlq")


def _mount_dev() -> None:
    """``unibus dev``: the local broker launcher, when its module is there. A launcher that
    fails to import leaves the other commands working and ``unibus dev`` saying why."""
    try:
        devstack = importlib.import_module("unibus.devstack.cli")
        dev = devstack.app
    except ModuleNotFoundError as exc:
        if exc.name not in ("unibus.devstack", "unibus.devstack.cli"):
            _broken_dev(exc)
        return
    except Exception as exc:
        _broken_dev(exc)
        return
    app.add_typer(dev, name="dev")


def _broken_dev(exc: BaseException) -> None:
    broken = typer.Typer()

    @broken.callback(invoke_without_command=True)
    def dev() -> None:
        fail(f"the local broker launcher (unibus.devstack) failed to load: {exc}; "
             "reinstall unibus or report the bug")

    app.add_typer(broken, name="dev", help="Start, stop and inspect local brokers (broken).")


_mount_dev()


def main() -> None:
    """Entry point of the ``unibus`` script."""
    try:
        app()
    except UnibusError as exc:  # from a mounted command that does not report its own
        fail(str(exc) or type(exc).__name__)
