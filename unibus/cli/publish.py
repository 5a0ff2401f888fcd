"""``unibus publish``: send one message from the command line."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

import unibus
from unibus.cli.failures import reports_errors
from unibus.cli.params import pairs
from unibus.message import Receipt

__all__ = ["publish"]

URL_HELP = "Broker URL (default: UNIBUS_URL, the UNIBUS_CONFIG file, or sqlite:///unibus.db)."


@reports_errors
def publish(
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    body: Annotated[str, typer.Argument(help="Message body; '-' reads it from stdin.")] = "",
    key: Annotated[str | None, typer.Option(help="Ordering / partition key.")] = None,
    header: Annotated[list[str] | None, typer.Option(
        "--header", "-H", help="A header as key=value; repeatable.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Event type, e.g. order.placed.")
                     ] = None,
    content_type: Annotated[str | None, typer.Option(
        help="Content type of the body, e.g. application/json.")] = None,
    delay: Annotated[float | None, typer.Option(
        min=0, help="Deliver after this many seconds (where the backend can delay).")] = None,
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
) -> None:
    """Publish one message (the body is sent as bytes) and print its receipt."""
    data = sys.stdin.buffer.read() if body == "-" else body.encode()
    fields: dict[str, object] = {"key": key, "headers": pairs(header, "--header")}
    if type_ is not None:
        fields["type"] = type_
    if content_type is not None:
        fields["content_type"] = content_type
    receipt = asyncio.run(_publish(url, topic, data, fields, delay))
    typer.echo(describe(receipt))


async def _publish(url: str | None, topic: str, data: bytes, fields: dict[str, object],
                   delay: float | None) -> Receipt:
    async with unibus.connect(url) as bus:
        return await bus.publish(topic, bus.message(data, **fields), delay=delay)


def describe(receipt: Receipt) -> str:
    where = [f"{name} {value}" for name in ("partition", "offset", "sequence")
             if (value := getattr(receipt, name)) is not None]
    text = f"published {receipt.message_id} to {receipt.topic}"
    if where:
        text += f" ({', '.join(where)})"
    if receipt.duplicate:
        text += ", a duplicate the broker dropped"
    return text
