"""The dead-letter queue of a topic's group: browse, get, replay and purge.

Browsing is non-destructive: messages are taken with basic.get without acknowledging them
and handed back (basic.nack, requeue) when done. A requeued message takes back its place
in a classic queue, so the DLQ keeps its order (quorum DLQs requeue at the back on
RabbitMQ 4). While a browse runs, the messages it holds are invisible to other readers;
each scan reads at most the number of messages the queue held when it started, so
messages dead-lettered meanwhile are left for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import aiormq.abc
import aiormq.exceptions as amqp
from pamqp.commands import Basic

from unibus import deadletter
from unibus.deadletter import DeadLetter
from unibus.errors import ConfigError, TopologyError
from unibus_rabbitmq import _errors, _wire
from unibus_rabbitmq._producer import Publisher
from unibus_rabbitmq._topology import Names, Topology

__all__ = ["RabbitMQDeadLetterQueue"]


class RabbitMQDeadLetterQueue:
    """DeadLetterQueue protocol over ``<topic>.<group>.dlq`` (or ``<topic>.dlq``)."""

    def __init__(
        self, topic: str, group: str | None, *, topology: Topology, publisher: Publisher
    ) -> None:
        self.topic = topic
        self.group = group
        self.queue = Names.dlq(topic, group)
        self._topology = topology
        self._publisher = publisher

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        if limit < 1:
            raise ConfigError("limit must be at least 1")
        out: list[DeadLetter] = []
        async with self._scan() as (channel, count):
            for _ in range(min(limit, count)):
                raw = await self._next(channel)
                if raw is None:
                    break
                out.append(self._dead_letter(raw))
        return out

    async def get(self, message_id: str) -> DeadLetter | None:
        async with self._scan() as (channel, count):
            for _ in range(count):
                raw = await self._next(channel)
                if raw is None:
                    break
                dead = self._dead_letter(raw)
                if dead.message.id == message_id:
                    return dead
        return None

    async def replay(
        self, ids: Iterable[str] | None = None, *, limit: int | None = None,
        rate: float | None = None,
    ) -> int:
        wanted = None if ids is None else set(ids)
        if rate is not None and not rate > 0:
            raise ConfigError(f"rate must be a positive number per second, got {rate!r}")
        replayed = 0
        done: set[str] = set()
        async with self._scan() as (channel, count):
            for _ in range(count):
                if (limit is not None and replayed >= limit) or (wanted == set() and not done):
                    break
                raw = await self._next(channel)
                if raw is None:
                    break
                dead = self._dead_letter(raw)
                if dead.message.id in done:
                    # A second copy (dead-lettered again after a lost ack): the message was
                    # just replayed, so the copy goes without a second replay.
                    with _errors.consuming(f"remove copy of {dead.message.id}"):
                        await channel.basic_ack(raw.delivery_tag or 0)
                    continue
                if wanted is not None:
                    if dead.message.id not in wanted:
                        continue
                    wanted.discard(dead.message.id)
                await self._republish(dead)
                done.add(dead.message.id)
                with _errors.consuming(f"remove replayed {dead.message.id} from {self.queue}"):
                    await channel.basic_ack(raw.delivery_tag or 0)
                replayed += 1
                if rate is not None:
                    await asyncio.sleep(1.0 / rate)  # pacing the replay, as asked
        return replayed

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        if ids is None:
            try:
                async with self._topology.channel(f"purge {self.queue!r}") as channel:
                    ok = await channel.queue_purge(self.queue)
            except TopologyError as exc:
                if _missing(exc):
                    return 0
                raise
            return int(ok.message_count or 0)
        wanted = set(ids)
        purged = 0
        async with self._scan() as (channel, count):
            for _ in range(count):
                if not wanted:
                    break
                raw = await self._next(channel)
                if raw is None:
                    break
                message, _ = _wire.decode(raw)
                if message.id in wanted:
                    wanted.discard(message.id)
                    with _errors.consuming(f"delete {message.id} from {self.queue}"):
                        await channel.basic_ack(raw.delivery_tag or 0)
                    purged += 1
        return purged

    # -- internals --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _scan(self) -> AsyncIterator[tuple[Any, int]]:
        """A channel on the DLQ and how many messages it holds. What is taken and not
        acknowledged goes back to its place when the channel closes (the broker requeues
        a closed channel's unacknowledged messages before it confirms the close)."""
        if not await self._topology.queue_exists(self.queue):
            yield None, 0
            return
        async with self._topology.channel(f"read {self.queue!r}", bounded=False) as channel:
            ok = await channel.queue_declare(queue=self.queue, passive=True)
            yield channel, int(ok.message_count or 0)

    async def _next(self, channel: Any) -> aiormq.abc.DeliveredMessage | None:
        with _errors.consuming(f"read {self.queue!r}"):
            raw: aiormq.abc.DeliveredMessage = await channel.basic_get(
                self.queue, no_ack=False, timeout=self._topology.timeout
            )
        if isinstance(raw.delivery, Basic.GetEmpty):
            return None
        return raw

    def _dead_letter(self, raw: aiormq.abc.DeliveredMessage) -> DeadLetter:
        message, incoming = _wire.decode(raw)
        if deadletter.REASON not in message.headers:
            # Dead-lettered by the broker itself (delivery limit, TTL, queue length):
            # read the failure context from its x-death record.
            death = _wire.death_context(raw)
            when = death.get("time")
            context = {
                deadletter.REASON: f"rabbitmq: {_text(death.get('reason', 'dead-lettered'))}",
                deadletter.ORIGINAL_TOPIC: _text(death.get("exchange") or self.topic),
                deadletter.ATTEMPTS: str(max(incoming.attempt - 1, 1)),
            }
            if isinstance(when, datetime):
                context[deadletter.DEAD_LETTERED_AT] = when.isoformat()
            if self.group is not None:
                context[deadletter.ORIGINAL_GROUP] = self.group
            message = message.with_headers(**context)
        return DeadLetter.from_message(message, default_topic=self.topic)

    async def _republish(self, dead: DeadLetter) -> None:
        """Back to the group's own queue (other groups already processed it), or to the
        topic's exchange for dead letters of private consumers. Confirmed before return."""
        message = dead.replayable()
        props = _wire.properties(message)
        if self.group is not None:
            exchange, key = "", Names.queue(dead.original_topic, self.group)
        else:
            exchange, key = dead.original_topic, _wire.routing_key(message)
        with _errors.publishing(dead.original_topic):
            await self._publisher.send(exchange, key, message.body, props)


def _missing(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, amqp.ChannelNotFoundEntity)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
