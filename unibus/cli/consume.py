"""``unibus consume``: tail a topic, printing each delivery."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

import unibus
from unibus.cli.failures import reports_errors
from unibus.cli.publish import URL_HELP
from unibus.protocols import Delivery, StartAt

__all__ = ["consume", "describe"]


def _start(value: str | None) -> StartAt | None:
    if value is None:
        return None
    if value == "earliest":
        return "earliest"
    if value == "latest":
        return "latest"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not 'earliest', 'latest' or an ISO time such as "
            "2026-01-31T12:00:00Z", param_hint="--from") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@reports_errors
def consume(
    topic: Annotated[list[str], typer.Argument(help="Topic(s) to read.")],
    group: Annotated[str | None, typer.Option(help="Consumer group to join.")] = None,
    start: Annotated[str | None, typer.Option(
        "--from", help="Where a new group starts: earliest, latest or an ISO time.")] = None,
    count: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many messages (default: run until Ctrl-C).")] = None,
    ack: Annotated[bool, typer.Option(
        "--ack/--no-ack", help="Acknowledge what is printed, or leave it for redelivery.")
    ] = True,
    timeout: Annotated[float | None, typer.Option(
        min=0, help="Stop when no message arrives within this many seconds.")] = None,
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
) -> None:
    """Print each message's id, key, attempt, headers and body as it arrives."""
    asyncio.run(_consume(url, topic, group, _start(start), count, ack, timeout))


async def _consume(url: str | None, topics: list[str], group: str | None,
                   start: StartAt | None, count: int | None, ack: bool,
                   timeout: float | None) -> None:
    console = Console(highlight=False, soft_wrap=True)
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer(topics, group=group, start=start)
        seen = 0
        try:
            while count is None or seen < count:
                try:
                    delivery = await consumer.receive(timeout=timeout)
                except unibus.OperationTimeoutError:
                    console.print(f"[dim]no message within {timeout:g}s; stopping[/]")
                    break
                console.print(describe(delivery))
                seen += 1
                if ack:
                    await delivery.ack()
        finally:
            # Unacknowledged deliveries go back to the broker at once for redelivery.
            await consumer.close(drain_timeout=30.0 if ack else 0.0)


def describe(delivery: Delivery) -> str:
    """Rich markup for one delivery: a header line, then the body."""
    m = delivery.message
    headers = json.dumps(dict(m.headers), ensure_ascii=False) if m.headers else "{}"
    try:
        body = m.body.decode()
    except UnicodeDecodeError:
        body = f"<{len(m.body)} bytes> {m.body[:64].hex()}"
    return (
        f"[bold]{escape(delivery.topic)}[/] id={escape(m.id)} key={escape(str(m.key))} "
        f"attempt={delivery.attempt} type={escape(m.type)} headers={escape(headers)}\n"
        f"  {escape(body)}"
    )
