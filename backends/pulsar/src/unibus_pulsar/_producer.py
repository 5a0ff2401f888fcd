"""Publishing: one client producer per topic, pipelined sends, receipts from message ids."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import _pulsar  # type: ignore[import-not-found]
import pulsar  # type: ignore[import-untyped]

from unibus.base import check_size
from unibus.errors import (
    CapabilityError,
    ClosedError,
    ConfigError,
    PublishError,
    TopicNotFoundError,
    UnibusError,
)
from unibus.message import Message, Receipt
from unibus_pulsar._bridge import call
from unibus_pulsar._delivery import ATTEMPTS, ORIGIN, TOPIC
from unibus_pulsar._errors import boundary, while_unavailable

if TYPE_CHECKING:
    from unibus_pulsar._backend import PulsarBackend

__all__ = ["PulsarProducer"]

log = logging.getLogger("unibus.pulsar")

_COMPRESSION = {
    "none": pulsar.CompressionType.NONE,
    "lz4": pulsar.CompressionType.LZ4,
    "zlib": pulsar.CompressionType.ZLib,
    "zstd": pulsar.CompressionType.ZSTD,
    "snappy": pulsar.CompressionType.SNAPPY,
}


class PulsarProducer:
    """Publishes to persistent topics; safe for concurrent use by tasks of one loop.

    Sends are pipelined: at most ``max_pending_messages`` are outstanding (the client's own
    queue is never allowed to fill, so no send blocks the loop). ``batched=False`` writes one
    entry per message (the dead-letter producer, whose entries are acknowledged one by one).
    """

    def __init__(self, backend: PulsarBackend, *, batched: bool | None = None) -> None:
        self._backend = backend
        o = backend.options
        self._batched = o.batching if batched is None else batched
        #: The client's producers (``_pulsar.Producer``) by topic.
        self._producers: dict[str, Any] = {}
        self._creating: dict[str, asyncio.Lock] = {}
        self._window = asyncio.Semaphore(o.max_pending_messages)
        self._closed = False

    # -- publish ------------------------------------------------------------------------------

    async def publish(self, topic: str, message: Message, *, delay: float | None = None
                      ) -> Receipt:
        self._check(message, delay)
        producer = await self._producer(topic)
        return await self._send(producer, topic, message, delay)

    async def publish_many(self, topic: str, messages: Sequence[Message], *,
                           delay: float | None = None) -> list[Receipt]:
        for message in messages:
            self._check(message, delay)
        if not messages:
            return []
        producer = await self._producer(topic)
        receipts: list[Receipt] = []
        step = self._backend.options.max_pending_messages
        for start in range(0, len(messages), step):
            chunk = messages[start:start + step]
            outcomes = await self._send_chunk(producer, chunk, delay)
            for message, (result, message_id) in zip(chunk, outcomes, strict=True):
                if result != pulsar.Result.Ok:
                    error = PublishError(f"publish to {topic} failed: {result}")
                    error.receipts = receipts  # type: ignore[attr-defined]
                    raise error
                receipts.append(self._receipt(topic, message, message_id))
        return receipts

    async def _send_chunk(self, producer: Any, chunk: Sequence[Message],
                          delay: float | None) -> list[tuple[Any, Any]]:
        """Hand every message of ``chunk`` to the client and wake the loop once, when the
        broker acknowledged the last of them (not once per message)."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        outcomes: list[tuple[Any, Any]] = [(None, None)] * len(chunk)
        # next() on a count is atomic under the GIL: exactly one callback sees the last one.
        completed = itertools.count(1).__next__
        total = len(chunk)

        def wake() -> None:
            if not finished.done():
                finished.set_result(None)

        def done(index: int, result: Any, message_id: Any) -> None:  # on a client thread
            outcomes[index] = (result, message_id)
            if completed() == total:
                with contextlib.suppress(RuntimeError):  # loop gone: nobody waits
                    loop.call_soon_threadsafe(wake)

        send = producer.send_async
        build = self._build
        window = self._window
        sent = 0
        try:
            with boundary("publish", PublishError):
                for index, message in enumerate(chunk):
                    await window.acquire()
                    sent += 1
                    send(build(message, delay), functools.partial(done, index))
            await asyncio.shield(finished)
        finally:
            for _ in range(sent):
                window.release()
        return outcomes

    @staticmethod
    def _build(message: Message, delay: float | None) -> Any:
        return _client_message(message.body, message.wire_headers(), message.key, delay,
                               int(message.time.timestamp() * 1000))

    @staticmethod
    def _receipt(topic: str, message: Message, message_id: Any) -> Receipt:
        partition = message_id.partition()
        ledger, entry = message_id.ledger_id(), message_id.entry_id()
        return Receipt(
            topic=topic,
            message_id=message.id,
            partition=partition if partition >= 0 else None,
            broker_id=f"{ledger}:{entry}:{partition}:{message_id.batch_index()}",
            duplicate=ledger < 0 and entry < 0,
        )

    async def send_raw(self, topic: str, body: bytes, properties: dict[str, str], *,
                       key: str | None, delay: float) -> None:
        """Send ``body`` with exactly ``properties`` (retry copies); no envelope, no checks."""
        if self._closed:
            raise ClosedError("the producer is closed")
        producer = await self._producer(topic)
        built = _client_message(body, properties, key, delay)
        async with self._window:
            with boundary(f"publish to {topic}", PublishError):
                await call(lambda done: producer.send_async(built, done))

    async def send_retry(self, topic: str, subscription: str, message: Message, *,
                         attempts: int, origin: str | None = None, delay: float = 0.0) -> None:
        """Write ``message`` of ``topic`` to ``subscription``'s retry topic, carrying the
        attempts before it, its topic and (when known) its original position."""
        properties = message.wire_headers()
        properties[ATTEMPTS] = str(attempts)
        properties[TOPIC] = topic
        if origin is not None:
            properties[ORIGIN] = origin
        await self.send_raw(self._backend.names.retry_topic(topic, subscription), message.body,
                            properties, key=message.key, delay=delay)

    def _check(self, message: Message, delay: float | None) -> None:
        if self._closed:
            raise ClosedError("the producer is closed")
        caps = self._backend.capabilities
        check_size(message, caps.max_message_size, "pulsar")
        if delay is None or delay == 0:
            return
        if not delay > 0:
            raise ConfigError(f"delay must be a non-negative number of seconds: {delay!r}")
        if caps.max_delay is None or delay > caps.max_delay:
            raise CapabilityError(f"delay={delay:g}s", caps.reason("delayed_delivery"),
                                  backend="pulsar")

    async def _send(self, producer: Any, topic: str, message: Message,
                    delay: float | None) -> Receipt:
        built = self._build(message, delay)
        send = producer.send_async
        async with self._window:
            with boundary(f"publish to {topic}", PublishError):
                message_id = await call(lambda done: send(built, done))
        return self._receipt(topic, message, message_id)

    # -- producers per topic ------------------------------------------------------------------

    async def _producer(self, topic: str) -> Any:
        found = self._producers.get(topic)
        if found is not None:
            return found
        lock = self._creating.setdefault(topic, asyncio.Lock())
        async with lock:
            found = self._producers.get(topic)
            if found is not None:
                return found
            backend = self._backend
            full = backend.names.topic(topic)
            if not backend.options.auto_create and not await backend.topology.exists(topic):
                raise TopicNotFoundError(
                    f"topic {topic!r} ({full}) does not exist and auto_create is off; "
                    "provision it first (bus.provision)"
                )
            configuration = self._configuration()

            async def create() -> Any:
                client = backend.client
                with boundary(f"create a producer for {topic}", PublishError):
                    return await call(lambda done: client.create_producer_async(
                        full, configuration, done))

            created = await while_unavailable(create, within=backend.options.operation_timeout)
            if self._closed:
                await self._close_one(topic, created)
                raise ClosedError("the producer is closed")
            self._producers[topic] = created
            return created

    def _configuration(self) -> Any:
        o = self._backend.options
        configuration = _pulsar.ProducerConfiguration()
        configuration.send_timeout_millis(int(o.send_timeout * 1000))
        configuration.compression_type(_COMPRESSION[o.compression])
        configuration.max_pending_messages(o.max_pending_messages)
        configuration.block_if_queue_full(False)
        configuration.batching_enabled(self._batched)
        configuration.batching_max_messages(o.batching_max_messages)
        configuration.batching_max_publish_delay_ms(max(1, int(o.batching_max_delay * 1000)))
        configuration.batching_type(pulsar.BatchingType.KeyBased
                                    if o.subscription_type == "key_shared"
                                    else pulsar.BatchingType.Default)
        configuration.partitions_routing_mode(pulsar.PartitionsRoutingMode.RoundRobinDistribution)
        return configuration

    async def close(self) -> None:
        """Flush what is pending, then close every topic's producer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        producers, self._producers = self._producers, {}
        await asyncio.gather(*(self._close_one(t, p) for t, p in producers.items()),
                             return_exceptions=True)

    async def release(self, topic: str) -> None:
        """Flush and close the client producers of ``topic`` and of its dead-letter and retry
        topics, which are about to be deleted; a later publish opens a new one."""
        prefix = topic + "-"
        for name in [t for t in self._producers
                     if t == topic or (t.startswith(prefix) and t.endswith(("-DLQ", "-RETRY")))]:
            producer = self._producers.pop(name)
            try:
                await self._close_one(name, producer)
            except UnibusError as exc:  # the topic is going anyway
                log.warning("pulsar: closing the producer of %s before deleting it: %s",
                            name, exc)

    @staticmethod
    async def _close_one(topic: str, producer: Any) -> None:
        with boundary(f"close the producer of {topic}", PublishError):
            try:
                await call(producer.flush_async)
            finally:
                await call(producer.close_async)


def _client_message(body: bytes, properties: dict[str, str], key: str | None,
                    delay: float | None, event_time_ms: int | None = None) -> Any:
    builder = _pulsar.MessageBuilder()
    builder.content(body)
    builder.properties(properties)
    if key is not None:
        builder.partition_key(key)
    if event_time_ms is not None:
        builder.event_timestamp(event_time_ms)
    if delay:
        builder.deliver_after(timedelta(seconds=delay))
    return builder.build()

