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

__all__ = ["capabilities", "rich_matrix"]


def rich_matrix(matrix: Matrix) -> Table:
    """One column per backend variant, one row per capability."""
    table = Table(title="unibus capabilities", header_style="bold", title_justify="left")
    table.add_column("capability", style="bold")
    for column in matrix.columns:
        table.add_column(escape(column.label))
    if matrix.columns:
        rows = [dict(c.capabilities.rows()) for c in matrix.columns]
        for dimension, _ in matrix.columns[0].capabilities.rows():
            cells = [_styled(r[dimension]) for r in rows]
            table.add_row(dimension, *cells)
    return table


def _styled(value: str) -> str:
    return "[dim]no[/]" if value == "no" else escape(value)


@reports_errors
def capabilities(
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", help="Only this backend (a name or URL scheme, e.g. sqs+fifo).")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="A backend option as key=value (needs --backend); repeatable.",
    )] = None,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the markdown table the docs are generated from.")] = False,
    reasons: Annotated[bool, typer.Option(
        "--reasons/--no-reasons", help="Explain what each backend lacks.")] = True,
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
    if matrix.columns:
        console.print(rich_matrix(matrix))
    if reasons:
        for labels, dimension, why in matrix.limitations():
            console.print(
                f"[bold]{escape(', '.join(labels))}[/] {dimension.replace('_', ' ')}: "
                f"{escape(why)}", soft_wrap=True)
    for missing in matrix.unavailable:
        console.print(f"[yellow]{escape(missing.backend)}[/]: {escape(str(missing))}",
                      soft_wrap=True)
