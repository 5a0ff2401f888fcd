"""The emulated dead-letter queue: a ``<topic>.dlq`` topic plus removal markers.

Kafka cannot delete one record from the middle of a log, and replay or purge may pick any
dead letters. So a removal is a *marker* record (empty body, header
``unibus-dlq-removed: <message id>``) written after the letter in the same partition; a
reader applies markers in log order (a letter dead-lettered again later stays visible).
After each removal the fully removed prefix of the log is physically deleted with
``delete_records``, so the DLQ stays as short as its oldest live letter allows. See
docs/design/kafka-dlq.md.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import RecordsToDelete  # type: ignore[import-untyped]

from unibus.deadletter import DeadLetter
from unibus.errors import OperationTimeoutError
from unibus.message import Message
from unibus_kafka import _errors
from unibus_kafka._codec import RETRY_TIER, decode, record_headers, retry_headers
from unibus_kafka._topology import dlq_topic, retry_topic

if TYPE_CHECKING:
    from unibus_kafka._backend import KafkaBackend

__all__ = ["REMOVED", "KafkaDeadLetterQueue"]

REMOVED = "unibus-dlq-removed"


@dataclass(slots=True)
class _Entry:
    tp: Any
    offset: int
    letter: DeadLetter
    tier: float | None = None  # the dead-lettering group's first retry tier, if recorded


class KafkaDeadLetterQueue:
    """Dead letters of ``topic``; with ``group``, only those that group dead-lettered."""

    def __init__(self, backend: KafkaBackend, topic: str, group: str | None = None) -> None:
        self._backend = backend
        self.topic = topic
        self.group = group
        self.name = dlq_topic(topic)

    async def list(self, limit: int = 100) -> builtins.list[DeadLetter]:
        return [e.letter for e in (await self._live())[:limit]]

    async def get(self, message_id: str) -> DeadLetter | None:
        for entry in await self._live():
            if entry.letter.message.id == message_id:
                return entry.letter
        return None

    async def replay(self, ids: Iterable[str] | None = None, *, limit: int | None = None,
                     rate: float | None = None) -> int:
        entries = self._select(await self._live(), ids)[:limit]
        replayed = 0
        for entry in entries:
            if rate and replayed:
                await asyncio.sleep(1 / rate)  # rate limit of the replay
            await self._send_back(entry)
            await self._remove([entry])
            replayed += 1
        await self._trim()
        return replayed

    async def _send_back(self, entry: _Entry) -> None:
        """A group's dead letter goes to the group's first retry tier, due at once and
        starting again at attempt 1: only that group's consumers read it (the topic's other
        groups processed the message already). The tier is the one the dead-lettering
        consumer recorded (its ``retry_tiers`` may differ from this bus's); a letter without
        it (written by an older unibus) takes this bus's first tier. An ungrouped one goes
        back to its topic."""
        producer = self._backend.internal_producer()
        letter = entry.letter
        message = letter.replayable()
        if letter.group is None:
            await producer.publish(letter.original_topic, message)
            return
        tier = entry.tier if entry.tier is not None else min(self._backend.options.retry_tiers)
        target = retry_topic(letter.original_topic, letter.group, tier)
        await self._backend.topology.require([target])
        headers = retry_headers(message, topic=letter.original_topic, attempt=1, due_ms=0)
        future = await producer.send(target, message, headers=headers)
        with _errors.publishing(target):
            await future

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        entries = self._select(await self._live(), ids)
        await self._remove(entries)
        await self._trim()
        return len(entries)

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _select(entries: builtins.list[_Entry], ids: Iterable[str] | None) -> builtins.list[_Entry]:
        if ids is None:
            return entries
        wanted = set(ids)
        return [e for e in entries if e.letter.message.id in wanted]

    async def _remove(self, entries: builtins.list[_Entry]) -> None:
        producer = self._backend.internal_producer()
        futures = []
        for entry in entries:
            marker = Message(body=b"", key=entry.letter.message.id)
            futures.append(await producer.send(
                self.name, marker, headers={REMOVED: entry.letter.message.id},
                partition=entry.tp.partition,
            ))
        with _errors.publishing(self.name):
            await asyncio.gather(*futures)

    async def _live(self) -> builtins.list[_Entry]:
        records = await self._read_all()
        live: dict[str, builtins.list[_Entry]] = {}
        order: builtins.list[_Entry] = []
        for tp, record in records:
            headers = record_headers(record)
            if REMOVED in headers:
                for gone in live.pop(headers[REMOVED], []):
                    gone.offset = -1
                continue
            tier = _tier(headers.pop(RETRY_TIER, None))
            letter = DeadLetter.from_message(decode(record, headers), default_topic=self.topic)
            entry = _Entry(tp, record.offset, letter, tier)
            # At least once: a message dead-lettered again (its original redelivered before
            # the commit) is one dead letter; the latest copy stands for it.
            for older in live.get(letter.message.id, []):
                older.offset = -1
            live[letter.message.id] = [entry]
            order.append(entry)
        out = [e for e in order if e.offset >= 0
               and (self.group is None or e.letter.group in (None, self.group))]
        return out  # log order: the DLQ topic has one partition, so oldest first

    async def _read_all(self) -> builtins.list[tuple[Any, Any]]:
        """Every record of the DLQ topic, in log order per partition."""
        topology = self._backend.topology
        if not await topology.exists(self.name):
            return []
        consumer = AIOKafkaConsumer(
            **self._backend.connection, group_id=None, enable_auto_commit=False,
            isolation_level=self._backend.options.isolation,
        )
        with _errors.consuming(f"read {self.name!r}"):
            await consumer.start()
        try:
            return await self._drain(consumer)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _drain(self, consumer: Any) -> builtins.list[tuple[Any, Any]]:
        tps = [TopicPartition(self.name, p)
               for p in await self._backend.topology.partitions(self.name)]
        out: builtins.list[tuple[Any, Any]] = []
        with _errors.consuming(f"read {self.name!r}"):
            consumer.assign(tps)
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, begin[tp])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._backend.options.request_timeout_ms / 1000
            remaining = {tp for tp in tps if end[tp] > begin[tp]}
            while remaining:
                if loop.time() > deadline:
                    raise OperationTimeoutError(f"reading {self.name!r} took too long")
                batch = await consumer.getmany(*remaining, timeout_ms=200)
                for tp, records in batch.items():
                    out.extend((tp, r) for r in records if r.offset < end[tp])
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
        return out

    async def _trim(self) -> None:
        """Physically delete the prefix of each partition that holds no live letter."""
        everyone = KafkaDeadLetterQueue(self._backend, self.topic)  # all groups' letters
        live = await everyone._live()
        records = await self._read_all()
        ends: dict[Any, int] = {}
        for tp, record in records:
            ends[tp] = max(ends.get(tp, 0), record.offset + 1)
        cut: dict[Any, Any] = {}
        for tp, end in ends.items():
            first_live = min((e.offset for e in live if e.tp == tp), default=end)
            if first_live > 0:
                cut[tp] = RecordsToDelete(first_live)
        if cut:
            with _errors.topology(f"delete removed dead letters of {self.name!r}"):
                await self._backend.topology.admin.delete_records(cut)


def _tier(value: str | None) -> float | None:
    """A recorded retry tier, or None when absent or not a positive number of seconds."""
    if value is None:
        return None
    try:
        tier = float(value)
    except ValueError:
        return None
    return tier if 0 < tier < float("inf") else None
