"""Publishing: an idempotent aiokafka producer, started on first use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from unibus.base import check_size
from unibus.errors import CapabilityError, ClosedError, PublishError, UnibusError
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
        batches = _Batches(client, topic)
        failure: BaseException | None = None
        try:
            await batches.fill(messages)
        except Exception as exc:  # what was submitted before still gets its receipts below
            failure = exc
        results = dict(zip(batches.futures, await asyncio.gather(
            *batches.futures.values(), return_exceptions=True), strict=True))
        receipts: list[Receipt] = []
        for message, (number, index) in zip(messages, batches.placed, strict=False):
            result = results.get(number, failure)
            if isinstance(result, BaseException):
                failure = failure or result
            elif result is not None:
                receipts.append(Receipt(topic, message.id, result.partition,
                                        result.offset + index))
            else:  # acks=0: the broker tells nothing
                receipts.append(Receipt(topic, message.id))
        if failure is not None:
            try:
                with _errors.publishing(topic):
                    raise failure
            except UnibusError as error:
                error.receipts = receipts  # type: ignore[attr-defined]
                raise
        return receipts

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
    if meta is None:  # acks=0: the broker tells nothing
        return Receipt(topic=topic, message_id=message.id)
    return Receipt(topic=topic, message_id=message.id, partition=meta.partition,
                   offset=meta.offset)


class _Batches:
    """One publish_many as record batches: a builder per partition, submitted with
    ``send_batch`` when full, so a record costs one append instead of one ``send()`` and one
    future. Keyed messages go where ``send()`` would put them (the producer's partitioner);
    keyless ones stick to one partition per batch, as Kafka's sticky partitioner does."""

    def __init__(self, client: Any, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.futures: dict[int, Any] = {}  # batch number -> future of its acknowledgement
        self.placed: list[tuple[int, int]] = []  # per message: (batch number, index in it)

    async def fill(self, messages: Sequence[Message]) -> None:
        client, topic = self.client, self.topic
        partitions = sorted(await client.partitions_for(topic))
        available = sorted(client.client.cluster.available_partitions_for_topic(topic) or ())
        partitioner = client._partitioner
        by_key: dict[bytes, int] = {}
        open_: dict[int, tuple[Any, int]] = {}  # partition -> (its open builder, batch number)
        numbers = 0
        sticky: int | None = None
        placed = self.placed
        for m in messages:
            if m.key is None:
                key = None
                if sticky is None:
                    sticky = partitioner(None, partitions, available)
                partition = sticky
            else:
                key = m.key.encode()
                partition = by_key.get(key, -1)
                if partition < 0:
                    partition = by_key[key] = partitioner(key, partitions, available)
            headers = encode_headers(m.wire_headers())
            while True:
                entry = open_.get(partition)
                if entry is None:
                    entry = open_[partition] = (client.create_batch(), numbers)
                    numbers += 1
                builder, number = entry
                meta = builder.append(timestamp=None, key=key, value=m.body, headers=headers)
                if meta is not None:
                    break
                if builder.record_count() == 0:  # an empty batch takes any record: not reached
                    raise PublishError(f"a message of {len(m.body)} B did not fit a batch")
                del open_[partition]  # full: submit it, continue in a new one
                await self._submit(builder, partition, number)
                if key is None:
                    sticky = partition = partitioner(None, partitions, available)
            placed.append((number, meta.offset))
        for partition, (builder, number) in open_.items():
            await self._submit(builder, partition, number)

    async def _submit(self, builder: Any, partition: int, number: int) -> None:
        builder.close()  # complete: no linger, and no send() may add to it
        self.futures[number] = await self.client.send_batch(builder, self.topic,
                                                            partition=partition)
