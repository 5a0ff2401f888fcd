"""``unibus dev``: start, inspect and stop the local brokers and stores."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from unibus.devstack._errors import DevStackError
from unibus.devstack._stack import BrokerStatus, DevStack

app = typer.Typer(help="Run the brokers (and the Redis/PostgreSQL stores) locally, without "
                  "Docker: up, down, status, logs, restart.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)

Names = Annotated[list[str] | None, typer.Argument(
    help="brokers or stores, or `brokers`, `stores`, `sqs` (default: all)")]

_STYLE = {"running": "green", "external": "cyan", "unhealthy": "yellow", "stopped": "red"}


def _table(statuses: list[BrokerStatus]) -> Table:
    table = Table(title="unibus dev")
    for column in ("name", "kind", "state", "pid", "url", "version", "started in", "log"):
        table.add_column(column)
    # Brokers first, then the stores, as two sections of one table.
    ordered = sorted(statuses, key=lambda s: s.kind != "broker")
    for index, s in enumerate(ordered):
        if index and s.kind != ordered[index - 1].kind:
            table.add_section()
        table.add_row(
            s.name, s.kind, f"[{_STYLE.get(s.state, 'white')}]{s.state}[/]", str(s.pid or ""),
            s.url, s.version, f"{s.started_in:.1f}s" if s.started_in is not None else "",
            str(s.log) if s.pid else "")
    return table


def _fail(error: DevStackError) -> None:
    err.print(f"[red]error:[/] {error}")
    raise typer.Exit(1)


@app.command()
def up(names: Names = None) -> None:
    """Start brokers and stores (idempotent) and wait until each answers its protocol."""
    stack = DevStack()
    statuses = []
    try:
        for name in stack.names(names or ()):
            with console.status(f"starting {name}..."):
                statuses.append(stack.start(name))
    except DevStackError as error:
        if statuses:
            console.print(_table(statuses))
        _fail(error)
    console.print(_table(statuses))


@app.command()
def down(names: Names = None) -> None:
    """Stop the brokers and stores this launcher started; nothing is left running."""
    stack = DevStack()
    try:
        stack.down(names or ())
        console.print(_table(stack.status(names or ())))
    except DevStackError as error:
        _fail(error)


@app.command()
def status(names: Names = None) -> None:
    """running / stopped / unhealthy / external (answering, but not started here)."""
    try:
        console.print(_table(DevStack().status(names or ())))
    except DevStackError as error:
        _fail(error)


@app.command()
def logs(name: str, lines: Annotated[int, typer.Option("-n", "--lines")] = 50) -> None:
    """The last lines of a broker's or store's log."""
    typer.echo(DevStack().logs(name, lines))


@app.command()
def restart(name: str, kill: Annotated[bool, typer.Option(help="SIGKILL instead of stop")] = False,
            ) -> None:
    """Stop and start a broker or store keeping its data."""
    try:
        console.print(_table([DevStack().restart(name, kill=kill)]))
    except DevStackError as error:
        _fail(error)


@app.command("running-names", hidden=True)
def running_names() -> None:
    """Names of the brokers and stores this launcher started and that are alive (for
    scripts)."""
    stack = DevStack()
    typer.echo(" ".join(s.name for s in stack.status() if s.pid is not None))
