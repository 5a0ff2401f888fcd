"""Exchanges and queues: how topics, groups, DLQs and delays are laid out on RabbitMQ.

- topic ``T``            -> durable topic exchange ``T``
- group ``G`` of ``T``   -> durable queue ``T.G`` (quorum by default) bound to ``T`` with ``#``,
                            dead-lettering (x-dead-letter-exchange) to ``T.dlx``
- its DLQ                -> durable queue ``T.G.dlq`` bound to ``T.dlx``
- ungrouped consumer     -> exclusive auto-delete queue ``T:<client id>:<random>``, dead
                            letters in ``T.dlq``
- nack(delay) of ``Q``   -> ``Q.retry.<tier ms>``: TTL queue dead-lettering back into ``Q``
- publish(delay=) to T   -> ``T.delay.<tier ms>``: TTL queue dead-lettering into exchange ``T``

Declarations go through short-lived plain channels (a refused declaration closes its
channel), are idempotent and are cached per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq.exceptions as amqp
from aio_pika.abc import AbstractRobustConnection

from unibus.errors import ConfigError, TopicNotFoundError, TopologyError
from unibus_rabbitmq import _errors
from unibus_rabbitmq._options import RabbitMQOptions

__all__ = ["Names", "Topology", "tier_ms"]

log = logging.getLogger("unibus.rabbitmq")

_MAX_MS = 2**32 - 1
#: Delay tiers (1-2-5 per decade). A delay uses the smallest tier that holds it, with its
#: exact time as per-message expiration: queues stay few, and a message waits behind
#: another only within one tier.
_TIERS = [m * 10**e for e in range(1, 10) for m in (1, 2, 5) if m * 10**e <= _MAX_MS]
_TIERS.append(_MAX_MS)
#: Retry/delay queues are redeclared at most this often; x-expires outlives that by far.
_REFRESH = 30.0
#: How long an unused retry/delay queue stays, past its tier. RabbitMQ retries an
#: at-least-once dead letter it could not forward every 180 s (after a restart, a queue can
#: recover before the exchanges it dead-letters to): the queue must outlast that, or it
#: deletes itself with the messages still in it.
_LINGER_MS = 600_000
#: Seconds a retry queue that confirmed no publish in time is passed over (see
#: Topology.unanswered).
_PASS_OVER = 300.0


def tier_ms(delay: float) -> tuple[int, int]:
    """(tier, exact) milliseconds for a delay in seconds."""
    exact = max(1, min(_MAX_MS, math.ceil(delay * 1000)))
    tier = next(t for t in _TIERS if t >= exact)
    return tier, exact


_NAME = re.compile(r"[A-Za-z0-9_.:@,/+-]{1,200}")


class Names:
    """Exchange and queue names for topics and groups."""

    @staticmethod
    def check(kind: str, name: str) -> str:
        """ConfigError unless ``name`` can be part of AMQP exchange and queue names."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"invalid {kind} name {name!r} for RabbitMQ: use 1-200 characters from "
                "letters, digits and _ . : @ , / + -"
            )
        return name

    @staticmethod
    def dlx(topic: str) -> str:
        return f"{topic}.dlx"

    @staticmethod
    def queue(topic: str, group: str) -> str:
        return f"{topic}.{group}"

    @staticmethod
    def private_queue(topic: str, client_id: str) -> str:
        client = re.sub(r"[^A-Za-z0-9_.-]", "-", client_id)[:40]
        return f"{topic}:{client}:{uuid.uuid4().hex[:12]}"

    @staticmethod
    def dlq(topic: str, group: str | None) -> str:
        return f"{topic}.{group}.dlq" if group is not None else f"{topic}.dlq"

    @staticmethod
    def retry(queue: str, tier: int) -> str:
        return f"{queue}.retry.{tier}"

    @staticmethod
    def delay(topic: str, tier: int) -> str:
        return f"{topic}.delay.{tier}"


class Topology:
    """Idempotent declarations on the broker, remembered per process."""

    def __init__(self, connection: AbstractRobustConnection, options: RabbitMQOptions) -> None:
        self._connection = connection
        self._options = options
        self._exchanges: set[str] = set()
        self._queues: set[str] = set()
        self._ttl_queues: dict[str, float] = {}
        self._unanswered: dict[str, float] = {}  # retry queue -> when it last failed to confirm
        self._locks: dict[str, asyncio.Lock] = {}
        #: Every queue this process declared, per topic (delete_topic removes them).
        self.declared: dict[str, set[str]] = {}

    @contextlib.asynccontextmanager
    async def channel(self, what: str, *, bounded: bool = True) -> AsyncIterator[Any]:
        """A plain channel for one operation (the broker closes it on a refusal). A bounded
        operation that gets no answer within 3 x connect_timeout is OperationTimeoutError
        (a broker going down mid-call does not always close the channel at once)."""
        limit = 3 * self._options.connect_timeout if bounded else None
        with _errors.topology(what):
            async with asyncio.timeout(limit):
                await self._connection.ready()
                channel = aio_pika.Channel(self._connection, publisher_confirms=False)
                await channel.initialize(timeout=self._options.connect_timeout)
                try:
                    yield await channel.get_underlay_channel()
                finally:
                    if not channel.is_closed:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(channel.close(),
                                                   self._options.connect_timeout)

    @property
    def timeout(self) -> float:
        """Seconds one broker call may take before it counts as lost."""
        return self._options.connect_timeout

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- topics -----------------------------------------------------------------------------

    async def exchange(self, topic: str, *, create: bool | None = None) -> None:
        """Make sure the topic's exchange exists; TopicNotFoundError when it does not and
        creation is off."""
        if topic in self._exchanges:
            return
        create = self._options.auto_create if create is None else create
        async with self._lock(topic):
            if topic in self._exchanges:
                return
            try:
                async with self.channel(f"declare exchange {topic!r}") as ch:
                    await ch.exchange_declare(
                        exchange=topic, exchange_type="topic", durable=True, passive=not create
                    )
            except TopologyError as exc:
                if isinstance(exc.__cause__, amqp.ChannelNotFoundEntity):
                    raise TopicNotFoundError(
                        f"topic {topic!r} does not exist (no exchange of that name); "
                        "provision it or connect with auto_create=true"
                    ) from exc.__cause__
                raise
            self._exchanges.add(topic)

    async def dead_letters(self, topic: str, group: str | None) -> str:
        """The DLX of ``topic`` and the DLQ of ``group`` (or of the topic); returns the DLQ."""
        dlq = Names.dlq(topic, group)
        if dlq in self._queues:
            return dlq
        dlx = Names.dlx(topic)
        async with self._lock(dlq):
            if dlq in self._queues:
                return dlq
            async with self.channel(f"declare dead-letter queue {dlq!r}") as ch:
                await ch.exchange_declare(exchange=dlx, exchange_type="direct", durable=True)
                await ch.queue_declare(
                    queue=dlq, durable=True,
                    arguments={"x-queue-type": self._options.dead_letter_queue_type},
                )
                await ch.queue_bind(queue=dlq, exchange=dlx, routing_key=dlq)
            self._remember(topic, dlq)
        return dlq

    async def group(
        self, topic: str, group: str, *, max_attempts: int | None, create: bool | None = None,
        replicas: int = 1,
    ) -> str:
        """Exchange, DLX, DLQ and the group's queue bound to the exchange; returns the queue.

        An existing queue is used as it is (RabbitMQ refuses other arguments for it)."""
        queue = Names.queue(topic, group)
        if queue in self._queues:
            return queue
        create = self._options.auto_create if create is None else create
        await self.exchange(topic, create=create)
        dlq = await self.dead_letters(topic, group)
        async with self._lock(queue):
            if queue in self._queues:
                return queue
            if not create:
                if not await self.queue_exists(queue):
                    raise TopologyError(
                        f"group {group!r} of topic {topic!r} has no queue ({queue!r}); "
                        "provision the topic with TopicSpec(groups=...) or use auto_create=true"
                    )
            else:
                try:
                    async with self.channel(f"declare queue {queue!r}") as ch:
                        await ch.queue_declare(
                            queue=queue, durable=True,
                            arguments=self.group_arguments(topic, dlq, max_attempts,
                                                           replicas=replicas),
                        )
                except TopologyError as exc:
                    # Declared before with other arguments: use the queue as it is.
                    if not isinstance(exc.__cause__, amqp.ChannelPreconditionFailed):
                        raise
                async with self.channel(f"bind queue {queue!r}") as ch:
                    await ch.queue_bind(queue=queue, exchange=topic, routing_key="#")
            self._remember(topic, queue)
        return queue

    def group_arguments(
        self, topic: str, dlq: str, max_attempts: int | None, *, private: bool = False,
        replicas: int = 1,
    ) -> dict[str, Any]:
        o = self._options
        args: dict[str, Any] = {
            "x-dead-letter-exchange": Names.dlx(topic),
            "x-dead-letter-routing-key": dlq,
        }
        if not private:
            args["x-queue-type"] = o.queue_type
            if o.single_active_consumer:
                args["x-single-active-consumer"] = True
        if o.max_priority is not None:
            args["x-max-priority"] = o.max_priority
        if o.message_ttl is not None:
            args["x-message-ttl"] = math.ceil(o.message_ttl * 1000)
        if o.max_length is not None:
            args["x-max-length"] = o.max_length
        if o.max_length_bytes is not None:
            args["x-max-length-bytes"] = o.max_length_bytes
        if o.max_length is not None or o.max_length_bytes is not None:
            args["x-overflow"] = o.overflow
        limit = o.delivery_limit or max_attempts
        if not private and o.queue_type == "quorum" and limit is not None:
            args["x-delivery-limit"] = limit
        if not private and o.queue_type == "quorum" and replicas > 1:
            args["x-quorum-initial-group-size"] = replicas
        return args

    async def queue_exists(self, queue: str) -> bool:
        try:
            async with self.channel(f"look up queue {queue!r}") as ch:
                await ch.queue_declare(queue=queue, passive=True)
        except TopologyError as exc:
            if isinstance(exc.__cause__, amqp.ChannelNotFoundEntity):
                return False
            raise
        return True

    # -- delays -----------------------------------------------------------------------------

    async def ttl_queue(self, topic: str, name: str, tier: int, *, to_exchange: str,
                        to_key: str | None) -> None:
        """A queue whose messages dead-letter to ``to_exchange`` when their TTL ends; it
        deletes itself once unused for longer than any message can wait in it."""
        now = time.monotonic()
        if now - self._ttl_queues.get(name, -math.inf) < _REFRESH:
            return
        # Quorum with at-least-once dead-lettering: the broker moves an expired message on
        # only once its target confirmed it, even across a restart (classic queues
        # dead-letter at most once and drop what the target cannot take at that instant).
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": to_exchange,
            "x-expires": min(_MAX_MS, tier + _LINGER_MS),
        }
        if to_key is not None:
            args["x-dead-letter-routing-key"] = to_key
        try:
            async with self.channel(f"declare delay queue {name!r}") as ch:
                await ch.queue_declare(queue=name, durable=True, arguments=args)
        except TopologyError as exc:
            # Declared by an earlier unibus with another x-expires: use it as it is (it is
            # declared anew with these arguments once it expired).
            if not isinstance(exc.__cause__, amqp.ChannelPreconditionFailed):
                raise
        self._ttl_queues[name] = now
        self._remember(topic, name)

    def forget_ttl_queue(self, name: str) -> None:
        self._ttl_queues.pop(name, None)

    def unanswered(self, name: str) -> bool:
        """Whether the retry queue ``name`` confirmed no publish within publish_timeout in
        the last five minutes (see :meth:`confirmed_nothing`)."""
        return time.monotonic() - self._unanswered.get(name, -math.inf) < _PASS_OVER

    def confirmed_nothing(self, name: str) -> None:
        """Record that the retry queue ``name`` did not confirm a publish in time.

        A quorum queue that has no leader (RabbitMQ 3.10 can restart without one for a queue
        declared a moment before the node died) takes publishes and never confirms them.
        Retries meant for it are redelivered at once instead, so they keep their attempts
        and reach the dead-letter queue rather than waiting on it forever."""
        if not self.unanswered(name):
            log.error(
                "rabbitmq: retry queue %r confirmed no publish within %gs; retries meant "
                "for it are redelivered without delay for the next %gs (a quorum queue "
                "without a leader never confirms: see docs/backends/rabbitmq.md)",
                name, self._options.publish_timeout, _PASS_OVER)
        self._unanswered[name] = time.monotonic()

    # -- teardown ---------------------------------------------------------------------------

    async def delete_topic(self, topic: str, groups: tuple[str, ...] = ()) -> None:
        """Delete the exchange, its DLX, the topic DLQ and every queue of ``topic`` this
        process declared or was told about (``groups``)."""
        queues = set(self.declared.pop(topic, set()))
        queues.add(Names.dlq(topic, None))
        for group in groups:
            queues.update({Names.queue(topic, group), Names.dlq(topic, group)})
        async with self.channel(f"delete topic {topic!r}") as ch:
            for queue in sorted(queues):
                await ch.queue_delete(queue=queue)
            await ch.exchange_delete(exchange=topic)
            await ch.exchange_delete(exchange=Names.dlx(topic))
        self._exchanges.discard(topic)
        self._queues.difference_update(queues)
        for queue in queues:
            self._ttl_queues.pop(queue, None)

    def _remember(self, topic: str, queue: str) -> None:
        self._queues.add(queue)
        self.declared.setdefault(topic, set()).add(queue)
