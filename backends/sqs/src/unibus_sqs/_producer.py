"""Publishing to a topic's queue (queue mode) or SNS topic (SNS mode), singly or in batches
of up to 10 entries (and 256 KiB) per request."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from unibus.base import check_size
from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, ClosedError, MessageTooLargeError, PublishError
from unibus.message import Message, Receipt
from unibus_sqs._capabilities import MAX_MESSAGE_SIZE
from unibus_sqs._codec import encode_sized, fifo_id
from unibus_sqs._errors import QueueGone, boundary
from unibus_sqs._topology import Topology

__all__ = ["SQSProducer", "build_entry"]

BATCH = 10
_CONCURRENT_BATCHES = 16


def build_entry(
    message: Message, *, fifo: bool, sns: bool, delay: float | None = None,
    extra: dict[str, str] | None = None, dedup: str | None = None, group: str | None = None,
) -> dict[str, Any]:
    """The SendMessage (or SNS Publish) arguments for ``message``; size checked first."""
    return _sized_entry(message, fifo=fifo, sns=sns, delay=delay, extra=extra, dedup=dedup,
                        group=group)[0]


def _sized_entry(
    message: Message, *, fifo: bool, sns: bool, delay: float | None = None,
    extra: dict[str, str] | None = None, dedup: str | None = None, group: str | None = None,
) -> tuple[dict[str, Any], int]:
    """:func:`build_entry` and the bytes SQS counts for it (batches are cut by size)."""
    check_size(message, MAX_MESSAGE_SIZE, "sqs")
    body, attributes, size = encode_sized(message, extra=extra)
    if size > MAX_MESSAGE_SIZE:
        raise MessageTooLargeError(size, MAX_MESSAGE_SIZE, "sqs")
    entry: dict[str, Any] = {"Message" if sns else "MessageBody": body,
                             "MessageAttributes": attributes}
    if delay and not sns:
        entry["DelaySeconds"] = math.ceil(delay)
    if fifo:
        entry["MessageGroupId"] = group or fifo_id(
            message.key if message.key is not None else message.id)
        entry["MessageDeduplicationId"] = dedup or fifo_id(message.id)
    return entry, size


class SQSProducer:
    """Safe for concurrent use. Every publish returns once SQS/SNS accepted it."""

    def __init__(self, topology: Topology, capabilities: Capabilities) -> None:
        self.topology = topology
        self.capabilities = capabilities
        self.options = topology.options
        self._closed = False

    def _check(self, delay: float | None) -> None:
        if self._closed:
            raise ClosedError("the producer is closed")
        if delay:
            limit = self.capabilities.max_delay
            if limit is None or delay > limit:
                raise CapabilityError(f"delay={delay:g}s",
                                      self.capabilities.reason("delayed_delivery"),
                                      backend="sqs")

    def _entry(self, message: Message, delay: float | None) -> dict[str, Any]:
        return build_entry(message, fifo=self.options.fifo, sns=self.topology.sns_mode,
                           delay=delay)

    async def _target(self, topic: str) -> str:
        create = self.options.auto_create
        if self.topology.sns_mode:
            return await self.topology.topic_arn(topic, create=create)
        name = self.topology.names.topic_queue(topic)
        return await self.topology.queue_url(name, create=create, topic=topic)

    async def publish(self, topic: str, message: Message, *, delay: float | None = None
                      ) -> Receipt:
        self._check(delay)
        entry = self._entry(message, delay)
        for again in (True, False):
            target = await self._target(topic)
            try:
                with boundary(f"publishing to {topic}", default=PublishError, topic=topic):
                    if self.topology.sns_mode:
                        reply = await self.topology.clients.sns.publish(TopicArn=target, **entry)
                    else:
                        reply = await self.topology.clients.sqs.send_message(
                            QueueUrl=target, **entry)
                return _receipt(topic, message, reply)
            except QueueGone:
                # The broker lost the queue (e.g. an in-memory server restarted): recreate.
                self.topology.forget()
                if not (again and self.options.auto_create):
                    raise
        raise AssertionError("unreachable")

    async def publish_many(self, topic: str, messages: Sequence[Message], *,
                           delay: float | None = None) -> list[Receipt]:
        self._check(delay)
        fifo, sns = self.options.fifo, self.topology.sns_mode
        entries: list[dict[str, Any]] = []
        sizes: list[int] = []
        for i, m in enumerate(messages):
            entry, size = _sized_entry(m, fifo=fifo, sns=sns, delay=delay)
            entry["Id"] = str(i)  # built once, whichever batch (or retry) carries it
            entries.append(entry)
            sizes.append(size)
        chunks = _chunks(sizes)
        receipts: list[Receipt | None] = [None] * len(messages)
        failures: list[str] = []

        async def send(chunk: list[int]) -> None:
            try:
                await self._send_batch(topic, chunk, entries, messages, receipts)
            except PublishError as exc:
                failures.append(str(exc))

        if self.options.fifo:  # one batch after the other keeps per-key order across them
            for chunk in chunks:
                await send(chunk)
                if failures:
                    break
        else:
            gate = asyncio.Semaphore(_CONCURRENT_BATCHES)

            async def gated(chunk: list[int]) -> None:
                async with gate:
                    await send(chunk)

            await asyncio.gather(*(gated(c) for c in chunks))
        if failures or any(r is None for r in receipts):
            error = PublishError(
                f"{sum(r is None for r in receipts)} of {len(messages)} messages to {topic} "
                f"were not accepted: {'; '.join(failures[:3])}")
            error.receipts = [r for r in receipts if r is not None]  # type: ignore[attr-defined]
            raise error
        return [r for r in receipts if r is not None]

    async def _send_batch(self, topic: str, chunk: list[int], entries: list[dict[str, Any]],
                          messages: Sequence[Message], receipts: list[Receipt | None]) -> None:
        pending = list(chunk)
        for round_ in range(3):
            target = await self._target(topic)
            batch = [entries[i] for i in pending]
            try:
                with boundary(f"publishing to {topic}", default=PublishError, topic=topic):
                    if self.topology.sns_mode:
                        reply = await self.topology.clients.sns.publish_batch(
                            TopicArn=target, PublishBatchRequestEntries=batch)
                    else:
                        reply = await self.topology.clients.sqs.send_message_batch(
                            QueueUrl=target, Entries=batch)
            except QueueGone:
                self.topology.forget()
                if not self.options.auto_create or round_ == 2:
                    raise
                continue
            for ok in reply.get("Successful", []):
                i = int(ok["Id"])
                receipts[i] = _receipt(topic, messages[i], ok)
            failed = reply.get("Failed", [])
            if any(f.get("SenderFault") for f in failed):
                bad = [f for f in failed if f.get("SenderFault")]
                raise PublishError(f"{bad[0].get('Code')}: {bad[0].get('Message')}")
            pending = [int(f["Id"]) for f in failed]
            if not pending:
                return
        raise PublishError(f"{len(pending)} messages were refused after 3 tries")

    async def close(self) -> None:
        self._closed = True  # every publish awaited its acknowledgement: nothing to flush


def _chunks(sizes: list[int]) -> list[list[int]]:
    """Indexes in batches of at most 10 entries and 256 KiB of payload."""
    out: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(sizes):
        if current and (len(current) == BATCH or total + n > MAX_MESSAGE_SIZE):
            out.append(current)
            current, total = [], 0
        current.append(i)
        total += n
    if current:
        out.append(current)
    return out


def _receipt(topic: str, message: Message, reply: dict[str, Any]) -> Receipt:
    sequence = reply.get("SequenceNumber")
    return Receipt(topic=topic, message_id=message.id,
                   broker_id=str(reply.get("MessageId")) if reply.get("MessageId") else None,
                   sequence=int(sequence) if sequence else None)
