"""Receiving with long polling, settling through SQS calls, keeping slow handlers' messages
invisible, and recovering from a lost connection or a lost queue by itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from unibus.base import BaseConsumer, BaseDelivery
from unibus.capabilities import Capabilities
from unibus.deadletter import failure_headers
from unibus.errors import (
    ConnectionFailedError,
    ConsumeError,
    OperationTimeoutError,
    PublishError,
    SerializationError,
    SettlementError,
    TopicNotFoundError,
    UnibusError,
)
from unibus.message import Message
from unibus_sqs._batching import Batcher
from unibus_sqs._codec import decode
from unibus_sqs._errors import QueueGone, boundary
from unibus_sqs._producer import build_entry
from unibus_sqs._topology import Topology

__all__ = ["SQSConsumer", "Source"]

log = logging.getLogger("unibus.sqs")

_MAX_VISIBILITY = 43200  # 12 hours, the SQS ceiling
# Only what a delivery uses: "All" has every message carry (and the client parse) six more.
_SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount"]


@dataclasses.dataclass
class Source:
    """One queue a consumer reads: a topic's queue, a group's queue or a private queue."""

    topic: str
    group: str | None
    queue_name: str
    private: bool
    url: str = ""
    dead_letter_url: str = ""
    subscription: str | None = None


@dataclasses.dataclass
class Handle:
    source: Source
    receipt: str
    sqs_id: str
    extended_at: float


class SQSConsumer(BaseConsumer):
    backend_name = "sqs"

    def __init__(self, topology: Topology, sources: Sequence[Source], group: str | None, *,
                 capabilities: Capabilities, prefetch: int, max_attempts: int | None) -> None:
        super().__init__([s.topic for s in sources], group, capabilities=capabilities,
                         prefetch=prefetch, max_attempts=max_attempts)
        self.topology = topology
        self.options = topology.options
        self.sources = list(sources)
        self._unsettled: dict[str, Handle] = {}  # receipt handle -> handle
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = False
        self._reserved = 0  # room taken by ReceiveMessage calls in flight
        self._fetchers: list[asyncio.Task[Any]] = []
        self._polling: set[asyncio.Task[Any]] = set()  # fetchers inside ReceiveMessage
        self._deletes = Batcher(self._delete_batch, "delete")

    # -- set-up ---------------------------------------------------------------------------

    async def provision(self, source: Source) -> None:
        """Create (or find) the source's queue, DLQ, redrive policy and SNS subscription."""
        t = self.topology
        create = self.options.auto_create or source.private
        if t.sns_mode:
            arn = await t.topic_arn(source.topic, create=self.options.auto_create)
        source.url = await t.queue_url(source.queue_name, create=create, topic=source.topic)
        source.dead_letter_url = await t.dead_letter_url(
            source.topic, source.group, create=self.options.auto_create)
        await t.redrive(source.url, source.dead_letter_url, self.max_attempts)
        if t.sns_mode:
            source.subscription = await t.subscribe(arn, source.url)
        elif source.group is not None:
            await t.bind_group(source.url, source.topic, source.group)

    async def start(self) -> None:
        try:
            for source in self.sources:
                await self.provision(source)
        except BaseException:
            await self._drop_private()
            raise
        for source in self.sources:
            for _ in range(self.options.receive_concurrency):
                self._fetchers.append(self._spawn(self._fetch_or_fail(source)))
        self._spawn(self._keep_invisible())

    # -- fetching -------------------------------------------------------------------------

    async def _fetch_or_fail(self, source: Source) -> None:
        try:
            await self._fetch(source)
        except asyncio.CancelledError:
            raise
        except UnibusError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: surface it to receivers rather than hang them
            log.exception("consumer_failed topic=%s", source.topic)
            self._fail(ConsumeError(f"receiving from {source.topic} failed: {exc!r}"))

    async def _fetch(self, source: Source) -> None:
        backoff = 0.2
        while not self._stopping:
            room = min(10, self.prefetch - len(self._unsettled) - self._reserved)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            self._reserved += room
            try:
                with boundary(f"receiving from {source.topic}", topic=source.topic):
                    reply = await self._receive(source, room)
                backoff = 0.2
            except QueueGone:
                # An in-memory server lost its queues (restart): build them again.
                if not self.options.auto_create and not source.private:
                    self._fail(TopicNotFoundError(f"topic {source.topic!r} was deleted"))
                    return
                log.warning("consumer_recover topic=%s queue=%s reason=queue-missing",
                            source.topic, source.queue_name)
                self.topology.forget()
                with contextlib.suppress(UnibusError):
                    await self.provision(source)
                await asyncio.sleep(backoff)  # retry pacing while the broker comes back
                backoff = min(backoff * 2, 5.0)
                continue
            except (ConnectionFailedError, OperationTimeoutError, ConsumeError) as exc:
                log.warning("consumer_retry topic=%s error=%s", source.topic, exc)
                await asyncio.sleep(backoff)  # retry pacing while the broker comes back
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._reserved -= room
            for raw in reply.get("Messages", []) or []:
                self._push(self._delivery(source, raw))

    async def _receive(self, source: Source, room: int) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        self._polling.add(task)
        try:
            reply: dict[str, Any] = await self.topology.clients.sqs.receive_message(
                QueueUrl=source.url, MaxNumberOfMessages=room,
                WaitTimeSeconds=self.options.wait_time,
                AttributeNames=_SYSTEM_ATTRIBUTES, MessageAttributeNames=["All"])
            return reply
        finally:
            self._polling.discard(task)

    def _delivery(self, source: Source, raw: dict[str, Any]) -> BaseDelivery:
        body = raw.get("Body", "")
        try:
            message = decode(body, raw.get("MessageAttributes"))
        except SerializationError:
            message = Message(body=body.encode("utf-8"))
        system = raw.get("Attributes", {})
        handle = Handle(source, raw["ReceiptHandle"], raw.get("MessageId", ""),
                        time.monotonic())
        self._unsettled[handle.receipt] = handle
        return BaseDelivery(self, message, topic=source.topic,
                            attempt=max(1, int(system.get("ApproximateReceiveCount", "1"))),
                            raw=handle)

    def _forget(self, delivery: BaseDelivery) -> Handle:
        handle: Handle = delivery.raw
        self._unsettled.pop(handle.receipt, None)
        self._room.set()
        return handle

    async def _keep_invisible(self) -> None:
        """Extend the visibility of unsettled messages so a slow handler causes no duplicate."""
        timeout = self.options.visibility_timeout
        period = max(timeout / 3, 0.5)
        while True:
            await asyncio.sleep(period)  # heartbeat cadence
            now = time.monotonic()
            due: dict[str, list[Handle]] = {}
            for handle in list(self._unsettled.values()):
                if now - handle.extended_at >= timeout / 2:
                    due.setdefault(handle.source.url, []).append(handle)
            for url, handles in due.items():
                for i in range(0, len(handles), 10):
                    chunk = handles[i:i + 10]
                    with contextlib.suppress(UnibusError):
                        await self._change_visibility(url, chunk, timeout)
                    for handle in chunk:
                        handle.extended_at = now

    # -- settling -------------------------------------------------------------------------

    async def _delete_batch(self, url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            with boundary("acknowledging", default=SettlementError):
                reply: dict[str, Any] = await self.topology.clients.sqs.delete_message_batch(
                    QueueUrl=url, Entries=entries)
                return reply
        except QueueGone as exc:
            raise SettlementError(f"the queue is gone; {exc}") from exc

    async def _change_visibility(self, url: str, handles: list[Handle], timeout: int) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": timeout}
                   for i, h in enumerate(handles)]
        try:
            with boundary("changing visibility", default=SettlementError):
                await self.topology.clients.sqs.change_message_visibility_batch(
                    QueueUrl=url, Entries=entries)
        except QueueGone as exc:
            raise SettlementError(f"the queue is gone; {exc}") from exc

    async def _ack(self, delivery: BaseDelivery) -> None:
        handle = self._forget(delivery)
        await self._deletes.submit(handle.source.url, {"ReceiptHandle": handle.receipt})

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        handle = self._forget(delivery)
        await self._change_visibility(handle.source.url, [handle],
                                      min(math.ceil(delay), _MAX_VISIBILITY))

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        handle = self._forget(delivery)
        source = handle.source
        message = delivery.message
        extra = failure_headers(message, topic=source.topic, group=source.group,
                                reason=reason, attempts=delivery.attempt)
        # In a FIFO DLQ each dead letter is its own message group, so listing the DLQ (which
        # holds what it read) never hides the rest of a group behind it.
        entry = build_entry(message.with_headers(**extra), fifo=self.options.fifo, sns=False,
                            dedup=f"dl-{handle.sqs_id}", group=f"dl-{handle.sqs_id}")
        try:
            with boundary("dead-lettering", default=SettlementError, topic=source.topic):
                await self.topology.clients.sqs.send_message(
                    QueueUrl=source.dead_letter_url, **entry)
        except (QueueGone, PublishError) as exc:
            raise SettlementError(f"dead-lettering failed; {exc}") from exc
        log.error("dlq_send topic=%s group=%s id=%s reason=%s", source.topic, source.group,
                  message.id, reason)
        await self._deletes.submit(source.url, {"ReceiptHandle": handle.receipt})

    # -- closing --------------------------------------------------------------------------

    async def _stop_fetching(self) -> None:
        """Start no new receive and let those in flight finish (at most ``wait_time``).

        Cancelling a long poll would not stop it on the server, which could still hand it
        messages that then stay invisible for a visibility timeout; what the last polls
        bring is released for redelivery at once instead.
        """
        self._stopping = True
        self._room.set()
        polling = [t for t in self._fetchers if t in self._polling]
        for task in self._fetchers:
            if task not in self._polling:
                task.cancel()  # idle, backing off or re-provisioning: nothing to lose
        if polling:
            _, late = await asyncio.wait(polling, timeout=self.options.wait_time + 5.0)
            for task in late:
                task.cancel()
        await asyncio.gather(*self._fetchers, return_exceptions=True)

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        by_url: dict[str, list[Handle]] = {}
        for delivery in deliveries:
            handle = self._forget(delivery)
            by_url.setdefault(handle.source.url, []).append(handle)
        for url, handles in by_url.items():
            for i in range(0, len(handles), 10):
                # Best effort: what is not released reappears after the visibility timeout.
                with contextlib.suppress(UnibusError):
                    await self._change_visibility(url, handles[i:i + 10], 0)

    async def _finish(self) -> None:
        await self._deletes.close()
        await self._drop_private()

    async def _drop_private(self) -> None:
        for source in self.sources:
            if not source.private:
                continue
            with contextlib.suppress(UnibusError):
                if source.subscription:
                    await self.topology.unsubscribe(source.subscription)
                if source.url:
                    await self.topology.delete_queue(source.url)
