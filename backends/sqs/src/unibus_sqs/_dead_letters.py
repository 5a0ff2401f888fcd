"""The dead-letter queue of a topic (queue mode) or of a group (SNS mode).

SQS cannot peek, so reading the DLQ receives its messages with a short visibility timeout
and gives back those it does not remove. Replay sends a message back to the queue it came
from and deletes it from the DLQ only after SQS accepted the send.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterable
from typing import Any

from unibus import deadletter
from unibus.deadletter import DeadLetter
from unibus.errors import (
    CapabilityError,
    OperationTimeoutError,
    PublishError,
    TopicNotFoundError,
    TopologyError,
    UnibusError,
)
from unibus_sqs._codec import decode, fifo_id
from unibus_sqs._errors import boundary, error_code
from unibus_sqs._producer import build_entry
from unibus_sqs._topology import Topology

__all__ = ["SQSDeadLetterQueue"]

_HOLD = 30  # seconds a scanned dead letter stays invisible before it is given back
_SCAN_LIMIT = 10_000
_UNSUPPORTED = frozenset({"InvalidAction", "UnsupportedOperation", "NotImplemented",
                          "AWS.SimpleQueueService.UnsupportedOperation", "500"})
_NATIVE_REASON = "received more than maxReceiveCount times (SQS redrive policy)"


@dataclasses.dataclass
class _Entry:
    dead: DeadLetter
    receipt: str
    sqs_id: str
    sent: int


class SQSDeadLetterQueue:
    def __init__(self, topology: Topology, topic: str, group: str | None) -> None:
        self.topology = topology
        self.topic = topic
        self.group = group if topology.sns_mode else None

    async def _url(self) -> str | None:
        try:
            return await self.topology.dead_letter_url(self.topic, self.group, create=False)
        except TopicNotFoundError:
            return None

    async def _scan(self, url: str, limit: int = _SCAN_LIMIT) -> list[_Entry]:
        """Receive (and so hide) up to ``limit`` dead letters, oldest first."""
        found: dict[str, _Entry] = {}
        sqs = self.topology.clients.sqs
        while len(found) < limit:
            with boundary(f"reading the dead letters of {self.topic}", default=TopologyError):
                reply = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                    VisibilityTimeout=_HOLD, AttributeNames=["All"],
                    MessageAttributeNames=["All"])
            messages = reply.get("Messages", []) or []
            if not messages:
                break
            for raw in messages:
                found[raw["MessageId"]] = self._entry(raw)
        if any(e.dead.reason == _NATIVE_REASON for e in found.values()):
            received = await self._redrive_limit()
            for entry in found.values():
                if entry.dead.reason == _NATIVE_REASON:
                    entry.dead = dataclasses.replace(entry.dead, attempts=received)
        return sorted(found.values(), key=lambda e: e.sent)

    async def _redrive_limit(self) -> int:
        """The source queue's maxReceiveCount: how often SQS delivered a message it moved."""
        t = self.topology
        name = (t.names.group_queue(self.topic, self.group) if t.sns_mode and self.group
                else t.names.topic_queue(self.topic))
        with contextlib.suppress(UnibusError):
            url = await t.queue_url(name, create=False, topic=self.topic)
            with boundary("reading the redrive policy", default=TopologyError):
                reply = await t.clients.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["RedrivePolicy"])
            policy = reply.get("Attributes", {}).get("RedrivePolicy")
            if policy:
                return int(json.loads(policy)["maxReceiveCount"])
        return 0  # the policy is gone (queue deleted or changed): the count is unknown

    def _entry(self, raw: dict[str, Any]) -> _Entry:
        message = decode(raw.get("Body", ""), raw.get("MessageAttributes"))
        dead = DeadLetter.from_message(message, default_topic=self.topic)
        if deadletter.REASON not in message.headers:
            dead = dataclasses.replace(dead, reason=_NATIVE_REASON, group=self.group)
        system = raw.get("Attributes", {})
        return _Entry(dead, raw["ReceiptHandle"], raw["MessageId"],
                      int(system.get("SentTimestamp", "0")))

    async def _give_back(self, url: str, entries: list[_Entry]) -> None:
        sqs = self.topology.clients.sqs
        for i in range(0, len(entries), 10):
            chunk = entries[i:i + 10]
            with contextlib.suppress(UnibusError), boundary("releasing dead letters"):
                await sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                    {"Id": str(n), "ReceiptHandle": e.receipt, "VisibilityTimeout": 0}
                    for n, e in enumerate(chunk)])

    async def _delete(self, url: str, entries: list[_Entry]) -> int:
        deleted = 0
        sqs = self.topology.clients.sqs
        for i in range(0, len(entries), 10):
            chunk = entries[i:i + 10]
            with boundary("deleting dead letters", default=TopologyError):
                reply = await sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(n), "ReceiptHandle": e.receipt} for n, e in enumerate(chunk)])
            deleted += len(reply.get("Successful", []))
        return deleted

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        url = await self._url()
        if url is None:
            return []
        entries = await self._scan(url)
        await self._give_back(url, entries)
        return [e.dead for e in entries[:limit]]

    async def get(self, message_id: str) -> DeadLetter | None:
        url = await self._url()
        if url is None:
            return None
        entries = await self._scan(url)
        await self._give_back(url, entries)
        return next((e.dead for e in entries if e.dead.message.id == message_id), None)

    async def replay(self, ids: Iterable[str] | None = None, *, limit: int | None = None,
                     rate: float | None = None) -> int:
        url = await self._url()
        if url is None:
            return 0
        entries = await self._scan(url)
        wanted = None if ids is None else set(ids)
        chosen = [e for e in entries if wanted is None or e.dead.message.id in wanted]
        if limit is not None:
            chosen = chosen[:limit]
        rest = [e for e in entries if e not in chosen]
        await self._give_back(url, rest)
        replayed = 0
        started = time.monotonic()
        try:
            for entry in chosen:
                if rate:
                    wait = started + replayed / rate - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)  # rate limit
                await self._send_back(entry)
                await self._delete(url, [entry])  # only after the send was accepted
                replayed += 1
        finally:
            await self._give_back(url, chosen[replayed:])
        return replayed

    async def _send_back(self, entry: _Entry) -> None:
        """To the queue the message came from (the group's), or to the SNS topic."""
        t = self.topology
        dead = entry.dead
        message = dead.replayable()
        topic = dead.original_topic
        fifo = t.options.fifo
        dedup = fifo_id(entry.sqs_id, "rp-")
        if t.sns_mode and self.group is None:
            arn = await t.topic_arn(topic, create=t.options.auto_create)
            item = build_entry(message, fifo=fifo, sns=True, dedup=dedup)
            with boundary(f"replaying to {topic}", default=PublishError, topic=topic):
                await t.clients.sns.publish(TopicArn=arn, **item)
            return
        name = (t.names.group_queue(topic, self.group) if t.sns_mode and self.group
                else t.names.topic_queue(topic))
        queue = await t.queue_url(name, create=t.options.auto_create, topic=topic)
        item = build_entry(message, fifo=fifo, sns=False, dedup=dedup)
        with boundary(f"replaying to {topic}", default=PublishError, topic=topic):
            await t.clients.sqs.send_message(QueueUrl=queue, **item)

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        url = await self._url()
        if url is None:
            return 0
        wanted = None if ids is None else set(ids)
        removed = 0
        while True:
            entries = await self._scan(url)
            if not entries:
                return removed
            chosen = [e for e in entries if wanted is None or e.dead.message.id in wanted]
            await self._give_back(url, [e for e in entries if e not in chosen])
            removed += await self._delete(url, chosen)
            if wanted is not None:
                return removed

    async def redrive(self, rate: int | None = None, timeout: float = 120.0) -> int:
        """SQS's own redrive (StartMessageMoveTask): move every dead letter back to the
        queue it came from, headers unchanged, and wait for the task; returns how many
        moved. CapabilityError where the server has no message move tasks, and for the
        topic-wide DLQ of SNS mode (its private source queues are gone); replay() works
        everywhere."""
        t = self.topology
        if t.sns_mode and self.group is None:
            raise CapabilityError("native redrive of ungrouped consumers' dead letters",
                                  "their private queues were deleted; use replay()",
                                  backend="sqs")
        url = await self._url()
        if url is None:
            raise TopicNotFoundError(f"topic {self.topic!r} has no dead-letter queue")
        source = (t.names.group_queue(self.topic, self.group) if t.sns_mode and self.group
                  else t.names.topic_queue(self.topic))
        args: dict[str, Any] = {
            "SourceArn": await t.queue_arn(url),
            "DestinationArn": await t.queue_arn(
                await t.queue_url(source, create=False, topic=self.topic)),
        }
        if rate:
            args["MaxNumberOfMessagesPerSecond"] = rate
        sqs = t.clients.sqs
        with boundary("starting a message move task", default=TopologyError):
            try:
                handle = (await sqs.start_message_move_task(**args))["TaskHandle"]
            except Exception as exc:
                status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get(
                    "HTTPStatusCode", 0)
                if error_code(exc) in _UNSUPPORTED or status in (500, 501):
                    raise CapabilityError(
                        "native redrive (StartMessageMoveTask)",
                        f"this SQS server does not implement message move tasks "
                        f"({error_code(exc) or status}); use replay(), which moves dead "
                        "letters back by receive, send and delete", backend="sqs") from exc
                raise
        deadline = time.monotonic() + timeout
        while True:
            with boundary("reading message move tasks", default=TopologyError):
                tasks = (await sqs.list_message_move_tasks(
                    SourceArn=args["SourceArn"], MaxResults=10)).get("Results", [])
            task = next((x for x in tasks if x.get("TaskHandle") == handle), None)
            status = (task or {}).get("Status", "RUNNING")
            if status in ("COMPLETED", "CANCELLED", "FAILED"):
                if status == "FAILED":
                    raise TopologyError(f"the message move task failed: "
                                        f"{(task or {}).get('FailureReason', 'unknown')}")
                return int((task or {}).get("ApproximateNumberOfMessagesMoved", 0))
            if time.monotonic() > deadline:
                raise OperationTimeoutError(f"the message move task {handle} is still running")
            await asyncio.sleep(0.2)  # polling the task's status
