"""Publishing: an idempotent aiokafka producer, started on first use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from unibus.base import check_size
from unibus.errors import CapabilityError, ClosedError, PublishError
from unibus.message import Message, Receipt
from unibus_kafka import _errors
from unibus_kafka._codec import encode_headers

if TYPE_CHECKING:
    from unibus_kafka._backend import KafkaBackend

__all__ = ["KafkaProducer", "producer_settings"]

log = logging.getLogger("unibus.kafka")


def producer_settings(backend: KafkaBackend) -> dict[str, Any]:
    o = backend.options
    return {
        **backend.connection,
        "acks": "all" if o.acks == "all" else int(o.acks),
        "enable_idempotence": o.idempotent,
        "compression_type": None if o.compression == "none" else o.compression,
        "linger_ms": o.linger_ms,
        "max_batch_size": o.batch_size,
        "max_request_size": max(o.max_message_size + 4096, 1_048_576),
    }


class KafkaProducer:
    """Sends messages as Kafka records: key -> record key, headers and envelope -> headers.

    Safe for concurrent use. ``close()`` flushes what is pending.
    """

    def __init__(self, backend: KafkaBackend, **overrides: Any) -> None:
        self._backend = backend
        self._overrides = overrides
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def client(self) -> Any:
        """The started aiokafka producer."""
        if self._closed:
            raise ClosedError("the producer is closed")
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    client = AIOKafkaProducer(
                        **{**producer_settings(self._backend), **self._overrides}
                    )
                    with _errors.connecting(self._backend.where):
                        await client.start()
                    self._client = client
        return self._client

    def _check(self, messages: Sequence[Message], delay: float | None) -> None:
        if delay:
            raise CapabilityError(
                f"publish with delay={delay}s",
                self._backend.capabilities.reason("delayed_delivery"), backend="kafka",
            )
        for message in messages:
            check_size(message, self._backend.options.max_message_size, "kafka")

    async def send(self, topic: str, message: Message, *, headers: dict[str, str] | None = None,
                   partition: int | None = None) -> Any:
        """Queue one record; returns the future of its acknowledgement."""
        client = await self.client()
        with _errors.publishing(topic):
            return await client.send(
                topic,
                value=message.body,
                key=message.key.encode() if message.key is not None else None,
                headers=encode_headers(headers if headers is not None
                                       else message.wire_headers()),
                partition=partition,
            )

    async def publish(self, topic: str, message: Message, *, delay: float | None = None
                      ) -> Receipt:
        self._check([message], delay)
        await self._backend.topology.require([topic])
        future = await self.send(topic, message)
        with _errors.publishing(topic):
            meta = await future
        return _receipt(topic, message, meta)

    async def publish_many(self, topic: str, messages: Sequence[Message], *,
                           delay: float | None = None) -> list[Receipt]:
        self._check(messages, delay)
        if not messages:
            return []
        await self._backend.topology.require([topic])
        client = await self.client()
        futures = []
        with _errors.publishing(topic):  # one boundary for the batch: no per-message cost
            for m in messages:
                futures.append(await client.send(
                    topic, value=m.body, key=m.key.encode() if m.key is not None else None,
                    headers=encode_headers(m.wire_headers()),
                ))
        results = await asyncio.gather(*futures, return_exceptions=True)
        receipts: list[Receipt | None] = [
            None if isinstance(r, BaseException) else _receipt(topic, m, r)
            for m, r in zip(messages, results, strict=True)
        ]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            try:
                with _errors.publishing(topic):
                    raise failures[0]
            except PublishError as error:
                error.receipts = [r for r in receipts if r is not None]  # type: ignore[attr-defined]
                raise
        return [r for r in receipts if r is not None]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            try:
                with _errors.publishing("flush on close"):
                    await client.stop()  # flushes pending batches
            except Exception as exc:
                log.warning("kafka producer close: %s", exc)


def _receipt(topic: str, message: Message, meta: Any) -> Receipt:
    return Receipt(topic=topic, message_id=message.id, partition=meta.partition,
                   offset=meta.offset)
