"""Parsing of the CLI's ``key=value`` options."""

from __future__ import annotations

from collections.abc import Sequence

import typer

__all__ = ["pairs"]


def pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` as a dict; a usage error naming ``what`` for anything else."""
    out: dict[str, str] = {}
    for value in values or ():
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{what} must look like key=value, got {value!r}")
        out[key.strip()] = rest
    return out
