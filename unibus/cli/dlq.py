"""``unibus dlq list|show|replay|purge``: review and redrive dead letters on any backend."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import unibus
from unibus.cli.failures import fail, reports_errors
from unibus.cli.publish import URL_HELP

__all__ = ["app"]

app = typer.Typer(help="Review, replay and purge dead letters.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)

Topic = Annotated[str, typer.Argument(help="The topic whose dead letters to manage.")]
Group = Annotated[str | None, typer.Option(help="Consumer group (where DLQs are per group).")]
Url = Annotated[str | None, typer.Option(help=URL_HELP)]
Ids = Annotated[list[str] | None, typer.Option("--id", help="Only these message ids.")]


def _table(letters: list[unibus.DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("id", "key", "attempts", "dead-lettered at", "reason", "replays"):
        table.add_column(column, overflow="fold")
    for d in letters:
        when = d.dead_lettered_at.isoformat(timespec="seconds") if d.dead_lettered_at else ""
        table.add_row(d.message.id, d.message.key or "", str(d.attempts), when,
                      escape(d.reason), d.message.headers.get("unibus-replay-count", "0"))
    return table


@app.command("list")
@reports_errors
def list_(topic: Topic, group: Group = None, limit: int = 100, url: Url = None) -> None:
    """Dead letters of TOPIC, oldest first (nothing is removed)."""

    async def run() -> None:
        async with unibus.connect(url) as bus:
            console.print(_table(await bus.dead_letter_queue(topic, group).list(limit)))

    asyncio.run(run())


@app.command()
@reports_errors
def show(topic: Topic, message_id: str, group: Group = None, url: Url = None) -> None:
    """One dead letter in full: failure context, headers and body."""

    async def run() -> None:
        async with unibus.connect(url) as bus:
            letter = await bus.dead_letter_queue(topic, group).get(message_id)
            if letter is None:
                fail(f"no dead letter with id {message_id} for {topic}")
            console.print(f"[bold]{letter.message.id}[/] from {letter.original_topic}: "
                          f"{escape(letter.reason)} after {letter.attempts} attempt(s)")
            for name, value in sorted(letter.message.headers.items()):
                console.print(f"  {escape(name)}: {escape(value)}")
            console.print(escape(letter.message.body.decode("utf-8", "replace")))

    asyncio.run(run())


@app.command()
@reports_errors
def replay(
    topic: Topic, group: Group = None, ids: Ids = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    rate: Annotated[float | None, typer.Option(min=0.001, help="At most N per second.")] = None,
    url: Url = None,
) -> None:
    """Publish dead letters back to their topic; each leaves the DLQ once the broker
    acknowledged its replay."""
    if not ids and not all_:
        fail("name the messages with --id, or pass --all", code=2)

    async def run() -> None:
        async with unibus.connect(url) as bus:
            done = await bus.dead_letter_queue(topic, group).replay(
                ids or None, limit=limit, rate=rate)
            console.print(f"replayed {done} dead letter(s) to {topic}")

    asyncio.run(run())


@app.command()
@reports_errors
def purge(
    topic: Topic, group: Group = None, ids: Ids = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every dead letter.")] = False,
    url: Url = None,
) -> None:
    """Delete dead letters for good."""
    if not ids and not all_:
        fail("name the messages with --id, or pass --all", code=2)

    async def run() -> None:
        async with unibus.connect(url) as bus:
            done = await bus.dead_letter_queue(topic, group).purge(ids or None)
            console.print(f"purged {done} dead letter(s) of {topic}")

    asyncio.run(run())
