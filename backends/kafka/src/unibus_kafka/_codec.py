"""Messages to Kafka records and back; the headers unibus adds to retry records."""

from __future__ import annotations

from typing import Any

from unibus.message import Message
from unibus.positions import Position

__all__ = [
    "ATTEMPT",
    "RETRY_DUE",
    "RETRY_OFFSET",
    "RETRY_PARTITION",
    "RETRY_TIER",
    "RETRY_TOPIC",
    "decode",
    "encode_headers",
    "record_headers",
    "retry_headers",
]

#: Headers of retry records (see docs/design/kafka-retries.md); stripped on delivery.
ATTEMPT = "unibus-attempt"
RETRY_DUE = "unibus-retry-due"
RETRY_TOPIC = "unibus-retry-topic"
RETRY_PARTITION = "unibus-retry-partition"
RETRY_OFFSET = "unibus-retry-offset"
_INTERNAL = frozenset({ATTEMPT, RETRY_DUE, RETRY_TOPIC, RETRY_PARTITION, RETRY_OFFSET})
#: Header of a dead letter written by a group's consumer: the smallest of that consumer's
#: ``retry_tiers`` (seconds), i.e. which retry topic the group reads first. A replay goes
#: there, whatever tiers the replaying bus has (see docs/design/kafka-dlq.md).
RETRY_TIER = "unibus-dlq-retry-tier"


def encode_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def retry_headers(message: Message, *, topic: str, attempt: int, due_ms: int,
                  origin: Position | None = None) -> dict[str, str]:
    """The wire headers of a retry record of ``message``, read from ``topic``: delivered as
    attempt ``attempt`` once the clock passes ``due_ms`` (epoch milliseconds, 0 for at
    once). ``origin`` is where the message was first delivered, which the retry delivery
    reports as its position; without it (a replayed dead letter) the retry record's own
    place is its position."""
    headers = message.wire_headers()
    headers[ATTEMPT] = str(attempt)
    headers[RETRY_DUE] = str(due_ms)
    headers[RETRY_TOPIC] = topic
    if origin is not None:
        headers[RETRY_PARTITION] = str(origin.partition)
        headers[RETRY_OFFSET] = str(origin.offset)
    return headers


def record_headers(record: Any) -> dict[str, str]:
    """A consumer record's headers as ``str -> str`` (last value of a repeated name wins).

    unibus headers are text; binary values from other producers are decoded with
    replacement characters rather than stopping the consumer on a record it cannot change.
    """
    return {name: value.decode(errors="replace") if value is not None else ""
            for name, value in record.headers or ()}


def decode(record: Any, headers: dict[str, str]) -> Message:
    """The message a record carries, without the retry bookkeeping headers."""
    key = record.key.decode(errors="replace") if record.key is not None else None
    if ATTEMPT in headers:  # a retry record: drop its bookkeeping
        headers = {k: v for k, v in headers.items() if k not in _INTERNAL}
    return Message.from_wire(record.value or b"", headers, key=key)
