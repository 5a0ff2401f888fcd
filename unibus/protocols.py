"""The interface every backend implements. The rules are written on each method.

All methods are coroutines unless noted and raise only :mod:`unibus.errors`. Producers and
consumers are safe for concurrent use by tasks of one event loop; none of them blocks the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from unibus.capabilities import Capabilities
from unibus.deadletter import DeadLetter
from unibus.message import Message, Receipt
from unibus.options import BackendOptions
from unibus.positions import Position
from unibus.topology import TopicSpec

__all__ = ["Backend", "Consumer", "DeadLetterQueue", "Delivery", "Producer", "StartAt"]

#: Where a consumer starts or seeks to: the oldest retained message, only new messages, a
#: position taken from :attr:`Delivery.position` (inclusive), or the first message at or after
#: a time.
StartAt = Literal["earliest", "latest"] | Position | datetime


@runtime_checkable
class Producer(Protocol):
    async def publish(
        self, topic: str, message: Message, *, delay: float | None = None
    ) -> Receipt:
        """Send one message and return once the broker acknowledged it durably.

        Safe for concurrent use; messages with the same key published sequentially keep their
        order. ``delay`` (seconds) asks for delayed delivery and is refused with
        CapabilityError beyond the backend's ``max_delay``. Raises MessageTooLargeError,
        TopicNotFoundError (when auto-creation is off), PublishError, ConnectionFailedError.
        """
        ...

    async def publish_many(
        self, topic: str, messages: Sequence[Message], *, delay: float | None = None
    ) -> list[Receipt]:
        """Send a batch, pipelined; receipts are in input order.

        Returns only when every message is acknowledged; on failure raises PublishError whose
        ``receipts`` attribute (when present) lists the ones that were acknowledged.
        """
        ...

    async def close(self) -> None:
        """Flush what is pending and release resources. Idempotent."""
        ...


@runtime_checkable
class Delivery(Protocol):
    """One delivery of a message to a consumer. Settle it exactly once.

    Until settled, the message is in flight: no other member of the group receives it, and
    if the consumer dies or closes without settling, it is redelivered with ``attempt + 1``.
    A second settlement raises AlreadySettledError.
    """

    message: Message
    topic: str
    group: str | None
    attempt: int  # 1 on first delivery; counts broker redeliveries and nacks alike
    position: Position | None  # where to seek to replay from this message, if replayable

    @property
    def settled(self) -> bool: ...

    async def ack(self) -> None:
        """The message was processed; it will not be delivered to this group again.

        Backends that commit acknowledgements in batches (Kafka offsets, the embedded
        engine, Pulsar's ack grouping) return once the ack is recorded in the client and
        commit it shortly after, and always before a rebalance, a seek or close completes; a
        process that dies in between gets the message again (at-least-once). The others
        return when the broker confirmed the ack. Each backend's page says which it does.
        """
        ...

    async def nack(self, delay: float = 0.0) -> None:
        """Processing failed; redeliver after ``delay`` seconds without blocking others."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move the message to this topic's (group's) dead-letter queue with ``reason``."""
        ...


@runtime_checkable
class Consumer(Protocol):
    """Deliveries from one or more topics, for a group (competing) or alone (fan-out)."""

    topics: tuple[str, ...]
    group: str | None

    def __aiter__(self) -> AsyncIterator[Delivery]:
        """Deliveries until the consumer is closed. Order is per key where declared."""
        ...

    async def receive(self, timeout: float | None = None) -> Delivery:
        """The next delivery; raises OperationTimeoutError after ``timeout`` seconds."""
        ...

    async def receive_batch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``timeout`` for the first."""
        ...

    async def seek(self, to: StartAt) -> None:
        """Replay: the next deliveries start at ``to``. CapabilityError without replay."""
        ...

    async def close(self, drain_timeout: float = 30.0) -> None:
        """Graceful stop: fetch nothing new, wait up to ``drain_timeout`` for in-flight
        deliveries to be settled, commit what was settled, release the rest for redelivery.
        Deliveries buffered but not yet handed out are returned to the broker. Idempotent.
        """
        ...


@runtime_checkable
class DeadLetterQueue(Protocol):
    """The dead letters of one topic (and group, where the broker keeps them per group)."""

    topic: str
    group: str | None

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        """Oldest first, without removing or reordering them."""
        ...

    async def get(self, message_id: str) -> DeadLetter | None:
        """The dead letter with this message id, or None."""
        ...

    async def replay(
        self, ids: Iterable[str] | None = None, *, limit: int | None = None,
        rate: float | None = None,
    ) -> int:
        """Publish dead letters back to their topic (all, or ``ids``), at most ``rate`` per
        second; each is removed from the DLQ only after the broker acknowledged its replay.
        The replayed message keeps its id and gains a ``unibus-replay-count`` header.
        Returns how many were replayed.
        """
        ...

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or ``ids``); returns how many were deleted."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A plugin for one broker, registered under its URL schemes (entry points)."""

    name: ClassVar[str]
    distribution: ClassVar[str]
    Options: ClassVar[type[BackendOptions]]

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        """Capabilities under ``options`` (an instance of ``Options``). Pure: no I/O."""
        ...

    async def connect(self) -> None:
        """Open connections; raises ConnectionFailedError when the broker cannot be reached."""
        ...

    async def close(self) -> None:
        """Close every producer and consumer this backend made, then the connections."""
        ...

    def producer(self) -> Producer:
        """A producer sharing this backend's connection."""
        ...

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        """Subscribe. When this returns the subscription exists: every message published
        after it is delivered to the group (or, ungrouped, to this consumer). ``start``
        applies to a new group (default: the backend's natural start) and needs replay
        unless it is ``"latest"``. After ``max_attempts`` failed deliveries (nacks, or
        deaths without settling) a message goes to the dead-letter queue; None never does.
        """
        ...

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        """The DLQ object for ``topic`` (and ``group``)."""
        ...

    async def provision(self, spec: TopicSpec) -> None:
        """Create what ``spec`` needs (topic, partitions, groups, DLQs). Idempotent."""
        ...

    async def delete_topic(self, topic: str) -> None:
        """Remove the topic, its groups and DLQs. Idempotent; used by tests and tooling."""
        ...
