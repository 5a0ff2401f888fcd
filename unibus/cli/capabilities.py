"""``unibus capabilities``: the capability matrix of every installed backend."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unibus.cli.failures import reports_errors
from unibus.cli.matrix import Matrix, collect, column_for
from unibus.cli.params import pairs
from unibus.docs_gen import markdown_matrix

__all__ = ["capabilities", "rich_tables"]


def rich_tables(matrix: Matrix, width: int) -> list[Table]:
    """The matrix as tables of at most ``width`` characters: one column per backend variant,
    one row per capability, split across several tables when the terminal is narrow."""
    if not matrix.columns:
        return []
    values = [dict(c.capabilities.rows()) for c in matrix.columns]
    dimensions = list(values[0])
    first = max(len(d) for d in dimensions) + 3

    def needed(i: int) -> int:
        longest = max(len(v) for v in values[i].values())
        return min(max(longest, len(matrix.columns[i].label)), _MAX_CELL) + 3

    chunks: list[list[int]] = [[]]
    used = first + 1
    for i in range(len(matrix.columns)):
        if chunks[-1] and used + needed(i) > width:
            chunks.append([])
            used = first + 1
        chunks[-1].append(i)
        used += needed(i)
    tables = []
    for n, chunk in enumerate(chunks):
        title = "unibus capabilities" + (f" ({n + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        table = Table(title=title, header_style="bold", title_justify="left")
        table.add_column("capability", style="bold", no_wrap=True)
        for i in chunk:
            table.add_column(escape(matrix.columns[i].label), max_width=_MAX_CELL)
        for dimension in dimensions:
            table.add_row(dimension, *(_styled(values[i][dimension]) for i in chunk))
        tables.append(table)
    return tables


_MAX_CELL = 24


def _styled(value: str) -> str:
    return "[dim]no[/]" if value == "no" else escape(value)


@reports_errors
def capabilities(
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b",
        help="Only this backend, by name or any of its URL schemes (e.g. sqs).")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="A backend option as key=value (needs --backend); repeatable.",
    )] = None,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the markdown table the docs are generated from.")] = False,
    reasons: Annotated[bool | None, typer.Option(
        "--reasons/--no-reasons",
        help="Explain what each backend lacks (default: with --backend only).")] = None,
) -> None:
    """Print what every installed backend can honour, one column per backend and mode."""
    options = pairs(option, "--option")
    if options and backend is None:
        raise typer.BadParameter("--option needs --backend NAME", param_hint="--option")
    if options:
        assert backend is not None
        matrix = Matrix((column_for(backend, options),))
    else:
        matrix = collect(backend)
    if markdown:
        typer.echo(markdown_matrix(matrix), nl=False)
        return
    console = Console(highlight=False)
    for table in rich_tables(matrix, console.width):
        console.print(table)
    if reasons or (reasons is None and backend is not None):
        for labels, dimension, why in matrix.limitations():
            backend_name = next(c.backend for c in matrix.columns if c.label == labels[0])
            modes = sum(1 for c in matrix.columns if c.backend == backend_name)
            where = backend_name if len(labels) == modes else ", ".join(labels)
            console.print(f"[bold]{escape(where)}[/] {dimension.replace('_', ' ')}: "
                          f"{escape(why)}", soft_wrap=True)
    elif matrix.columns:
        console.print("[dim]why a backend lacks something: unibus capabilities --backend NAME, "
                      "or --reasons for all[/]", soft_wrap=True)
    for missing in matrix.unavailable:
        console.print(f"[yellow]{escape(missing.backend)}[/]: {escape(str(missing))}",
                      soft_wrap=True)
