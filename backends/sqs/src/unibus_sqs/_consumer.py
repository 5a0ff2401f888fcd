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


class SQSDelivery(BaseDelivery):
    """A received SQS message: its receipt handle and queue, decoded on first read."""

    __slots__ = ("_attributes", "_body", "extended_at", "receipt", "source", "sqs_id")

    def __init__(self, consumer: SQSConsumer, source: Source, raw: dict[str, Any],
                 attempt: int, now: float) -> None:
        receipt = raw["ReceiptHandle"]
        super().__init__(consumer, None, topic=source.topic, attempt=attempt, raw=receipt)
        self.source = source
        self.receipt: str = receipt
        self.sqs_id: str = raw.get("MessageId", "")
        self.extended_at = now  # when its visibility timeout last started
        self._body: str = raw.get("Body", "")
        self._attributes: dict[str, Any] | None = raw.get("MessageAttributes")

    def _decode(self) -> Message:
        body, attributes = self._body, self._attributes
        self._body, self._attributes = "", None  # the Message holds what is needed now
        try:
            return decode(body, attributes)
        except SerializationError:
            return Message(body=body.encode("utf-8"))


class SQSConsumer(BaseConsumer):
    backend_name = "sqs"

    def __init__(self, topology: Topology, sources: Sequence[Source], group: str | None, *,
                 capabilities: Capabilities, prefetch: int, max_attempts: int | None) -> None:
        super().__init__([s.topic for s in sources], group, capabilities=capabilities,
                         prefetch=prefetch, max_attempts=max_attempts)
        self.topology = topology
        self.options = topology.options
        self.sources = list(sources)
        self._unsettled: dict[str, SQSDelivery] = {}  # receipt handle -> delivery
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
            messages = reply.get("Messages")
            if messages:
                now = time.monotonic()
                self._push_many([self._delivery(source, raw, now) for raw in messages])

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

    def _delivery(self, source: Source, raw: dict[str, Any], now: float) -> SQSDelivery:
        system = raw.get("Attributes")
        count = system.get("ApproximateReceiveCount") if system else None
        delivery = SQSDelivery(self, source, raw, max(1, int(count)) if count else 1, now)
        self._unsettled[delivery.receipt] = delivery
        return delivery

    def _forget(self, delivery: BaseDelivery) -> SQSDelivery:
        assert isinstance(delivery, SQSDelivery)
        self._unsettled.pop(delivery.receipt, None)
        self._room.set()
        return delivery

    async def _keep_invisible(self) -> None:
        """Extend the visibility of unsettled messages so a slow handler causes no duplicate.

        It ends when the consumer has closed, not only when cancelled: a cancellation lost
        below it (on Python 3.11 ``asyncio.wait_for`` returns the result when one arrives as
        the wait completes) would leave it extending forever, holding ``close()``. It still
        runs while ``close()`` drains."""
        timeout = self.options.visibility_timeout
        period = max(timeout / 3, 0.5)
        while not self._closed:
            await asyncio.sleep(period)  # heartbeat cadence
            now = time.monotonic()
            due: dict[str, list[SQSDelivery]] = {}
            for delivery in list(self._unsettled.values()):
                if now - delivery.extended_at >= timeout / 2:
                    due.setdefault(delivery.source.url, []).append(delivery)
            for url, deliveries in due.items():
                for i in range(0, len(deliveries), 10):
                    chunk = deliveries[i:i + 10]
                    with contextlib.suppress(UnibusError):
                        await self._change_visibility(url, chunk, timeout)
                    for delivery in chunk:
                        delivery.extended_at = now

    # -- settling -------------------------------------------------------------------------

    async def _delete_batch(self, url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            with boundary("acknowledging", default=SettlementError):
                reply: dict[str, Any] = await self.topology.clients.sqs.delete_message_batch(
                    QueueUrl=url, Entries=entries)
                return reply
        except QueueGone as exc:
            raise SettlementError(f"the queue is gone; {exc}") from exc

    async def _change_visibility(self, url: str, deliveries: list[SQSDelivery],
                                 timeout: int) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": d.receipt, "VisibilityTimeout": timeout}
                   for i, d in enumerate(deliveries)]
        try:
            with boundary("changing visibility", default=SettlementError):
                await self.topology.clients.sqs.change_message_visibility_batch(
                    QueueUrl=url, Entries=entries)
        except QueueGone as exc:
            raise SettlementError(f"the queue is gone; {exc}") from exc

    async def _ack(self, delivery: BaseDelivery) -> None:
        sqs = self._forget(delivery)
        await self._deletes.submit(sqs.source.url, {"ReceiptHandle": sqs.receipt})

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        sqs = self._forget(delivery)
        await self._change_visibility(sqs.source.url, [sqs],
                                      min(math.ceil(delay), _MAX_VISIBILITY))

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        sqs = self._forget(delivery)
        source = sqs.source
        message = delivery.message
        extra = failure_headers(message, topic=source.topic, group=source.group,
                                reason=reason, attempts=delivery.attempt)
        # In a FIFO DLQ each dead letter is its own message group, so listing the DLQ (which
        # holds what it read) never hides the rest of a group behind it.
        entry = build_entry(message.with_headers(**extra), fifo=self.options.fifo, sns=False,
                            dedup=f"dl-{sqs.sqs_id}", group=f"dl-{sqs.sqs_id}")
        try:
            with boundary("dead-lettering", default=SettlementError, topic=source.topic):
                await self.topology.clients.sqs.send_message(
                    QueueUrl=source.dead_letter_url, **entry)
        except (QueueGone, PublishError) as exc:
            raise SettlementError(f"dead-lettering failed; {exc}") from exc
        log.error("dlq_send topic=%s group=%s id=%s reason=%s", source.topic, source.group,
                  message.id, reason)
        await self._deletes.submit(source.url, {"ReceiptHandle": sqs.receipt})

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
        by_url: dict[str, list[SQSDelivery]] = {}
        for delivery in deliveries:
            sqs = self._forget(delivery)
            by_url.setdefault(sqs.source.url, []).append(sqs)
        for url, chunk in by_url.items():
            for i in range(0, len(chunk), 10):
                # Best effort: what is not released reappears after the visibility timeout.
                with contextlib.suppress(UnibusError):
                    await self._change_visibility(url, chunk[i:i + 10], 0)

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
