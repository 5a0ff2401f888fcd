"""Transactional outbox: write messages in the same database transaction as the business
change, and let a relay publish them through any backend.

The application calls ``await outbox.add(conn, topic, message)`` on its own connection inside
its own transaction, so the message exists if and only if the change committed. The
:class:`OutboxRelay` reads pending rows in insertion order, publishes them, and deletes them
only after the broker acknowledged them: at-least-once, in order per key (a failed publish
stops the batch; everything after it waits for the retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from unibus.errors import UnibusError
from unibus.message import Message

__all__ = ["OutboxRecord", "OutboxRelay", "OutboxStore", "decode_row", "encode_message"]

log = logging.getLogger("unibus.outbox")

OutboxRecord = tuple[int, str, Message]  # (sequence, topic, message)


def encode_message(message: Message) -> tuple[str | None, str, bytes]:
    """(key, headers JSON, body) as the outbox table stores them."""
    return message.key, json.dumps(message.wire_headers()), message.body


def decode_row(seq: int, topic: str, key: str | None, headers: str, body: bytes) -> OutboxRecord:
    return seq, topic, Message.from_wire(bytes(body), json.loads(headers), key=key)


class OutboxStore(Protocol):
    async def pending(self, limit: int) -> list[OutboxRecord]:
        """The oldest unpublished records, in insertion order."""
        ...

    async def delete(self, sequences: Sequence[int]) -> None:
        """Forget records whose publish the broker acknowledged."""
        ...


class Publisher(Protocol):
    async def publish_many(self, topic: str, bodies: Sequence[Any]) -> Any: ...


class OutboxRelay:
    """Publishes outbox records through ``bus``; run one relay per outbox."""

    def __init__(self, store: OutboxStore, bus: Publisher, *, batch_size: int = 100,
                 interval: float = 0.2) -> None:
        self.store = store
        self.bus = bus
        self.batch_size = batch_size
        self.interval = interval
        self.published = 0
        self._stop = asyncio.Event()

    async def run_once(self) -> int:
        """Publish one batch; returns how many records were published."""
        records = await self.store.pending(self.batch_size)
        done = 0
        # Consecutive records of one topic go out as one pipelined batch, in order.
        start = 0
        while start < len(records):
            topic = records[start][1]
            end = start
            while end < len(records) and records[end][1] == topic:
                end += 1
            run = records[start:end]
            await self.bus.publish_many(topic, [message for _, _, message in run])
            await self.store.delete([seq for seq, _, _ in run])
            done += len(run)
            start = end
        self.published += done
        return done

    async def run(self) -> None:
        """Relay until :meth:`stop`; publish failures are logged and retried."""
        while not self._stop.is_set():
            try:
                published = await self.run_once()
            except UnibusError as exc:
                log.warning("outbox_relay_retry error=%s", exc)
                published = 0
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)

    def stop(self) -> None:
        self._stop.set()
