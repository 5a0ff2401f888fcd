"""Producers: JetStream (acknowledged, deduplicated, pipelined) and core NATS (fire and
forget, flushed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from unibus.base import check_size, encoded_size
from unibus.capabilities import Capabilities
from unibus.errors import (
    CapabilityError,
    ClosedError,
    MessageTooLargeError,
    OperationTimeoutError,
    PublishError,
)
from unibus.message import Message, Receipt
from unibus_nats import _names
from unibus_nats._client import UnibusClient
from unibus_nats._errors import boundary
from unibus_nats._options import NATSOptions
from unibus_nats._publisher import PubAckReply, Publisher
from unibus_nats._topology import Topology
from unibus_nats._wire import header_block

__all__ = ["CoreProducer", "JetStreamProducer"]


class _Producer:
    def __init__(self, capabilities: Capabilities, options: NATSOptions) -> None:
        self.capabilities = capabilities
        self.options = options
        self._closed = False

    def _check(self, messages: Sequence[Message], delay: float | None) -> None:
        if self._closed:
            raise ClosedError("the producer is closed")
        if delay:
            raise CapabilityError(f"delay={delay}", self.capabilities.reason("delayed_delivery"),
                                  backend="nats")
        for message in messages:
            check_size(message, self.capabilities.max_message_size, "nats")


class JetStreamProducer(_Producer):
    """Publishes into the topic's stream; each publish returns once its PubAck arrived."""

    def __init__(
        self, nc: UnibusClient, js: JetStreamContext, topology: Topology,
        capabilities: Capabilities, options: NATSOptions,
    ) -> None:
        super().__init__(capabilities, options)
        self.nc = nc
        self.js = js
        self.topology = topology
        self._publisher = Publisher(nc)
        self._pending = 0  # windows awaiting their PubAcks
        self._idle = asyncio.Event()
        self._idle.set()

    async def publish(
        self, topic: str, message: Message, *, delay: float | None = None,
        msg_id: str | None = None,
    ) -> Receipt:
        """``msg_id`` replaces the message id as the deduplication id (DLQ replay)."""
        self._check([message], delay)
        subject = _names.subject(topic)
        for attempt in (1, 2):
            stream = await self.topology.ensure(topic)
            with boundary("publish", f"publishing to {topic!r}"):
                try:
                    ack = await self.js.publish(
                        subject, message.body, timeout=self.options.publish_timeout,
                        headers=header_block(message, stream=stream, msg_id=msg_id),  # type: ignore[arg-type]
                    )
                except nats.errors.MaxPayloadError:
                    raise _too_large(message, self.nc) from None
                except nats.js.errors.NoStreamResponseError:
                    if attempt == 2:
                        raise
                    self.topology.forget(topic)  # deleted behind our back: look again
                    continue
            return _receipt(topic, message, ack)
        raise AssertionError("unreachable")

    async def publish_many(
        self, topic: str, messages: Sequence[Message], *, delay: float | None = None
    ) -> list[Receipt]:
        self._check(messages, delay)
        if not messages:
            return []
        subject = _names.subject(topic)
        stream = await self.topology.ensure(topic)
        receipts: list[Receipt] = []
        window = self.options.publish_window
        for first in range(0, len(messages), window):
            part = messages[first:first + window]
            receipts.extend(await self._publish_window(topic, subject, stream, part, receipts))
        return receipts

    async def _publish_window(
        self, topic: str, subject: str, stream: str, messages: Sequence[Message],
        earlier: list[Receipt],
    ) -> list[Receipt]:
        """Send up to ``publish_window`` messages back to back, then await their PubAcks."""
        timeout = self.options.publish_timeout
        max_payload = self.nc.max_payload
        items = []
        for message in messages:
            if len(message.body) > max_payload:
                raise _too_large(message, self.nc)
            items.append((message.body, header_block(message, stream=stream)))
        self._pending += 1
        self._idle.clear()
        try:
            with boundary("publish", f"publishing {len(messages)} messages to {topic!r}"):
                outcomes = await self._publisher.publish(subject, items, timeout)
        finally:
            self._pending -= 1
            if not self._pending:
                self._idle.set()
        receipts: list[Receipt] = []
        failure: BaseException | None = None
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, PubAckReply):
                receipts.append(Receipt(
                    topic=topic, message_id=message.id, sequence=outcome.seq,
                    broker_id=f"{outcome.stream}:{outcome.seq}", duplicate=outcome.duplicate))
            elif failure is None:
                failure = outcome or OperationTimeoutError(f"no PubAck within {timeout}s")
        if failure is not None:
            if isinstance(failure, nats.js.errors.NoStreamResponseError):
                self.topology.forget(topic)
            acked = earlier + receipts
            error = PublishError(
                f"{len(messages) - len(receipts)} messages to {topic!r} were not acknowledged "
                f"({failure!r}); publishing them again is safe (deduplicated by message id)")
            error.receipts = acked  # type: ignore[attr-defined]
            raise error from failure
        return receipts

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pending:
            # On timeout their publishers already got (or will get) a PublishError.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.options.publish_timeout)
        with contextlib.suppress(Exception):
            await self._publisher.close()


class CoreProducer(_Producer):
    """Core NATS: at most once; returns once the server has read the message (flush)."""

    def __init__(self, nc: Client, capabilities: Capabilities, options: NATSOptions) -> None:
        super().__init__(capabilities, options)
        self.nc = nc

    async def publish(
        self, topic: str, message: Message, *, delay: float | None = None
    ) -> Receipt:
        return (await self.publish_many(topic, [message], delay=delay))[0]

    async def publish_many(
        self, topic: str, messages: Sequence[Message], *, delay: float | None = None
    ) -> list[Receipt]:
        self._check(messages, delay)
        subject = _names.subject(topic)
        with boundary("publish", f"publishing to {topic!r}"):
            for message in messages:
                try:
                    await self.nc.publish(subject, message.body,
                                          headers=header_block(message))  # type: ignore[arg-type]
                except nats.errors.MaxPayloadError:
                    raise MessageTooLargeError(
                        encoded_size(message), self.nc.max_payload, "nats (server max_payload)"
                    ) from None
            await self.nc.flush(timeout=max(1, int(self.options.publish_timeout)))
        return [Receipt(topic=topic, message_id=m.id) for m in messages]

    async def close(self) -> None:
        self._closed = True


def _too_large(message: Message, nc: Client) -> MessageTooLargeError:
    """The server's max_payload is below the max_message_size option."""
    return MessageTooLargeError(encoded_size(message), nc.max_payload,
                                "nats (server max_payload)")


def _receipt(topic: str, message: Message, ack: api.PubAck) -> Receipt:
    return Receipt(topic=topic, message_id=message.id, sequence=ack.seq,
                   broker_id=f"{ack.stream}:{ack.seq}", duplicate=bool(ack.duplicate))
