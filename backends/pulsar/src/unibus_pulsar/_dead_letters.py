"""The dead-letter queue of a topic and group: the ``<topic>-<group>-DLQ`` topic.

Pulsar cannot delete single messages from a topic, so the DLQ's own subscription
(``dead_letter_subscription``, default ``unibus-dlq``) says what is still in it: replay and
purge acknowledge a dead letter on that subscription, and listing reads the topic with a
Reader (non-destructive, oldest first) and leaves out what the subscription acknowledged
(read from the topic's internal stats: mark-delete position and acknowledged ranges).
Purging everything moves the subscription to the end of the topic (skip_all).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import _pulsar  # type: ignore[import-not-found]
import pulsar  # type: ignore[import-untyped]

from unibus.deadletter import DeadLetter
from unibus.errors import ConsumeError, SettlementError
from unibus.message import Message
from unibus_pulsar._bridge import call, subscribe
from unibus_pulsar._errors import boundary

if TYPE_CHECKING:
    from unibus_pulsar._backend import PulsarBackend

__all__ = ["DeadLetterWriter", "PulsarDeadLetterQueue", "acknowledged"]

_RANGE = re.compile(r"\((-?\d+):(-?\d+)\.\.(-?\d+):(-?\d+)\]")


def acknowledged(cursor: dict[str, Any] | None) -> Any:
    """A predicate on (ledger, entry): acknowledged on the cursor described by ``cursor``
    (one entry of internal stats' ``cursors``). Nothing is acknowledged without a cursor."""
    if not cursor:
        return lambda position: False
    ledger, _, entry = str(cursor.get("markDeletePosition", "-1:-1")).partition(":")
    mark = (int(ledger), int(entry))
    ranges = [((int(a), int(b)), (int(c), int(d)))
              for a, b, c, d in _RANGE.findall(str(cursor.get("individuallyDeletedMessages",
                                                               "")))]

    def done(position: tuple[int, int]) -> bool:
        return position <= mark or any(lo < position <= hi for lo, hi in ranges)

    return done


@dataclass(frozen=True, slots=True)
class _Entry:
    letter: DeadLetter
    message_id: Any  # the client's MessageId, for the acknowledgement


class DeadLetterWriter:
    """Writes dead letters through an unbatched producer (one entry per dead letter)."""

    def __init__(self, backend: PulsarBackend) -> None:
        self._backend = backend

    async def write(self, topic: str, group: str | None, message: Message) -> None:
        backend = self._backend
        await backend.topology.ensure_dead_letter(topic, group)
        dlq = backend.names.dead_letter_topic(topic, group)
        await backend.unbatched_producer.publish(dlq, message)


class PulsarDeadLetterQueue:
    def __init__(self, backend: PulsarBackend, topic: str, group: str | None) -> None:
        self._backend = backend
        self.topic = topic
        self.group = group
        self.dlq_topic = backend.names.dead_letter_topic(topic, group)
        self._lock = asyncio.Lock()

    # -- reading ------------------------------------------------------------------------------

    async def _entries(self, limit: int | None = None) -> list[_Entry]:
        backend = self._backend
        stats = await backend.topology.admin.internal_stats(self.dlq_topic)
        if stats is None:
            return []  # no DLQ topic yet: nothing was dead-lettered
        cursor = stats.get("cursors", {}).get(backend.options.dead_letter_subscription)
        done = acknowledged(cursor)
        full = backend.names.topic(self.dlq_topic)
        out: list[_Entry] = []
        client = backend.client
        with boundary(f"read the dead-letter topic {self.dlq_topic}", ConsumeError):
            reader = await call(lambda done: client.create_reader_async(
                full, pulsar.MessageId.earliest, _pulsar.ReaderConfiguration(), done))
            try:
                while (limit is None or len(out) < limit) \
                        and await call(reader.has_message_available_async):
                    msg = await call(reader.read_next_async)
                    mid = msg.message_id()
                    if done((mid.ledger_id(), mid.entry_id())):
                        continue
                    message = Message.from_wire(msg.data(), msg.properties(),
                                                key=msg.partition_key() or None)
                    letter = DeadLetter.from_message(message, default_topic=self.topic)
                    out.append(_Entry(letter, mid))
            finally:
                await call(reader.close_async)
        return out

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        return [e.letter for e in await self._entries(limit)]

    async def get(self, message_id: str) -> DeadLetter | None:
        for entry in await self._entries():
            if entry.letter.message.id == message_id:
                return entry.letter
        return None

    # -- removing -----------------------------------------------------------------------------

    async def replay(self, ids: Iterable[str] | None = None, *, limit: int | None = None,
                     rate: float | None = None) -> int:
        wanted = None if ids is None else set(ids)
        async with self._lock:
            entries = [e for e in await self._entries()
                       if wanted is None or e.letter.message.id in wanted]
            if limit is not None:
                entries = entries[:limit]
            if not entries:
                return 0
            replayed = 0
            async with self._acknowledger() as ack:
                for n, entry in enumerate(entries):
                    if rate and n:
                        await asyncio.sleep(1.0 / rate)  # rate limit, not synchronisation
                    await self._send_back(entry.letter)
                    await ack(entry.message_id)  # only after the replay was acknowledged
                    replayed += 1
            return replayed

    async def _send_back(self, letter: DeadLetter) -> None:
        """A group's dead letter goes to the group's retry topic, which only that group's
        consumers read (the topic's other subscriptions processed the message already),
        carrying its topic and no earlier attempts; an ungrouped one to its topic."""
        producer = self._backend.unbatched_producer
        message = letter.replayable()
        if self.group is None:
            await producer.publish(letter.original_topic, message)
            return
        await producer.send_retry(letter.original_topic, self.group, message, attempts=0)

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        async with self._lock:
            entries = await self._entries()
            if ids is None:
                if entries:
                    await self._backend.topology.admin.skip_all(
                        self.dlq_topic, self._backend.options.dead_letter_subscription)
                return len(entries)
            wanted = set(ids)
            chosen = [e for e in entries if e.letter.message.id in wanted]
            if chosen:
                async with self._acknowledger() as ack:
                    for entry in chosen:
                        await ack(entry.message_id)
            return len(chosen)

    def _acknowledger(self) -> _Acknowledger:
        return _Acknowledger(self._backend, self.dlq_topic)


class _Acknowledger:
    """A short-lived consumer on the DLQ subscription that acknowledges by message id."""

    def __init__(self, backend: PulsarBackend, dlq_topic: str) -> None:
        self._backend = backend
        self._topic = dlq_topic
        self._consumer: Any = None  # the client's consumer

    async def __aenter__(self) -> Any:
        backend = self._backend
        conf = _pulsar.ConsumerConfiguration()
        conf.consumer_type(pulsar.ConsumerType.Shared)
        conf.receiver_queue_size(1)
        conf.subscription_initial_position(pulsar.InitialPosition.Earliest)
        with boundary(f"subscribe to the dead-letter topic {self._topic}", ConsumeError):
            self._consumer = await subscribe(
                backend.client, backend.names.topic(self._topic),
                backend.options.dead_letter_subscription, conf)
        return self._ack

    async def _ack(self, message_id: Any) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        with boundary(f"remove a dead letter from {self._topic}", SettlementError):
            await call(lambda done: consumer.acknowledge_async(message_id, done))

    async def __aexit__(self, *exc_info: object) -> None:
        if self._consumer is not None:
            with boundary(f"close the dead-letter consumer of {self._topic}", ConsumeError):
                await call(self._consumer.close_async)

