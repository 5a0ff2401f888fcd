"""``unibus config validate``: check a configuration without connecting to anything."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

import unibus
from unibus.cli.failures import reports_errors
from unibus.config import load_settings
from unibus.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(help="Check unibus configuration.", no_args_is_help=True)


@contextlib.contextmanager
def _config_file(path: Path | None) -> Iterator[None]:
    """Read configuration from ``path`` as an application would (``UNIBUS_CONFIG``)."""
    if path is None:
        yield
        return
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass a YAML file such as "
                          "one with 'url: kafka://localhost:9092'")
    before = os.environ.get("UNIBUS_CONFIG")
    os.environ["UNIBUS_CONFIG"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("UNIBUS_CONFIG", None)
        else:
            os.environ["UNIBUS_CONFIG"] = before


@app.command()
@reports_errors
def validate(
    file: Annotated[Path | None, typer.Argument(
        help="YAML config file (default: UNIBUS_CONFIG, then UNIBUS_* variables).")] = None,
) -> None:
    """Load the settings, check the requirements against the backend's declared
    capabilities, and say whether an application could connect with them."""
    with _config_file(file):
        settings = load_settings()
        bus = unibus.connect()  # checks URL, options and requirements; connects nothing
    asked = settings.requirements.model_dump(exclude_defaults=True, mode="json")
    console = Console(highlight=False, soft_wrap=True)
    source = str(file) if file else os.environ.get("UNIBUS_CONFIG") or "the environment"
    console.print(f"[green]ok[/]: {escape(source)} is valid")
    console.print(f"  url: {escape(settings.url)} (backend {escape(bus.backend.name)})")
    if settings.options:
        console.print(f"  options: {escape(repr(settings.options))}")
    if asked:
        wanted = ", ".join(f"{k}={v}" for k, v in asked.items())
        console.print(f"  requirements honoured: {escape(wanted)}")
    else:
        console.print("  requirements: none asked")
