"""Publishing with publisher confirms, persistence and mandatory routing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic

from unibus.base import check_size
from unibus.errors import CapabilityError, ClosedError, ConfigError, PublishError, UnibusError
from unibus.message import Message, Receipt
from unibus_rabbitmq import _errors, _pipeline, _wire
from unibus_rabbitmq._options import RabbitMQOptions
from unibus_rabbitmq._topology import Names, Topology, tier_ms

__all__ = ["Publisher", "RabbitMQProducer", "Unconfirmed"]

log = logging.getLogger("unibus.rabbitmq")


class Unconfirmed(TimeoutError):
    """The broker took a publish and did not confirm it within publish_timeout."""


class Publisher:
    """One confirm-mode robust channel: every send returns once the broker confirmed it, and
    raises when the broker returned it as unroutable (mandatory) or refused it."""

    def __init__(self, connection: AbstractRobustConnection, options: RabbitMQOptions) -> None:
        self._connection = connection
        self._options = options
        self._channel: AbstractRobustChannel | None = None
        self._opening = asyncio.Lock()
        # Message id -> the publish in flight that carries it. A basic.return names its
        # message only by id, so two publishes of one id at once could each be blamed for
        # the other's return: the second waits for the first (see _sole).
        self._in_flight: dict[str, asyncio.Future[None]] = {}
        self._serving: aiormq.abc.AbstractChannel | None = None  # _channel's current underlay
        self._closing: set[asyncio.Task[Any]] = set()  # abandoned channels being closed

    async def _underlay(self, replace: bool = True) -> aiormq.abc.AbstractChannel:
        channel = self._channel
        if channel is not None and self._connection.connected.is_set():
            underlay = await channel.get_underlay_channel()  # fast path: no timeout task
            if not underlay.is_closed:
                self._serving = underlay
                return underlay
            # Reconnected, but this channel is not restored yet: wait for it below.
        if self._channel is None:
            async with self._opening:
                if self._channel is None:
                    channel = self._connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    await channel.initialize(timeout=self._options.connect_timeout)
                    self._channel = channel
        current = self._channel
        try:
            await asyncio.wait_for(current.ready(), self._options.connect_timeout)
        except TimeoutError:
            if not (replace and self._connection.connected.is_set()):
                raise
            # The connection is back but this channel did not come back with it: use a
            # new one rather than failing every publish until the next reconnect.
            if self._channel is current:
                self._channel = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(current.close(), self._options.connect_timeout)
            return await self._underlay(replace=False)
        self._serving = await current.get_underlay_channel()
        return self._serving

    def _abandon(self, underlay: aiormq.abc.AbstractChannel) -> None:
        """The broker did not confirm in time on ``underlay``: publish on a new channel from
        now on. A channel whose broker-side process is stuck (for instance in a call to a
        quorum queue that has no leader) confirms nothing any more; keeping it would fail
        every later publish the same way."""
        channel = self._channel
        if channel is None or underlay is not self._serving or underlay.is_closed:
            return  # replaced already, or closed: the reconnection takes care of it
        self._channel, self._serving = None, None
        log.warning("rabbitmq: no publisher confirm within %gs on channel %s; publishing on "
                    "a new channel", self._options.publish_timeout, underlay.number)
        closing = asyncio.get_running_loop().create_task(
            asyncio.wait_for(channel.close(), self._options.connect_timeout))
        self._closing.add(closing)
        closing.add_done_callback(self._closed_quietly)

    def _closed_quietly(self, task: asyncio.Task[Any]) -> None:
        self._closing.discard(task)
        if not task.cancelled():
            task.exception()  # a stuck channel does not answer its close either

    async def send(
        self, exchange: str, routing_key: str, body: bytes, props: Basic.Properties
    ) -> None:
        async with self._sole([props.message_id] if props.message_id else []):
            channel = await self._underlay()
            # (aiormq gives an id-less publish a fresh id.) wait=False: not a drain of the
            # socket per message; the confirm awaited here comes after the frames were
            # written anyway, so the guarantee is the same.
            try:
                await channel.basic_publish(
                    body, exchange=exchange, routing_key=routing_key, properties=props,
                    mandatory=True, timeout=self._options.publish_timeout,
                    wait=False,  # type: ignore[call-arg]  # aiormq's Channel has it, its ABC not
                )
            except TimeoutError as exc:
                self._abandon(channel)
                raise Unconfirmed(f"no publisher confirm within "
                                  f"{self._options.publish_timeout:g}s") from exc

    async def send_many(self, items: Sequence[_pipeline.Outgoing]) -> list[BaseException | None]:
        """Per item, None once the broker confirmed it, else the (aiormq) error for it."""
        channel = await self._underlay()
        if _pipeline.supports(channel):
            rounds = _pipeline.distinct_ids(items)
            if len(rounds) == 1:
                async with self._sole([item.properties.message_id or "" for item in items]):
                    channel = await self._underlay()  # the same one, unless it was replaced
                    answers = await _pipeline.publish_window(
                        channel, items, self._options.publish_timeout)  # type: ignore[arg-type]
                    if any(isinstance(a, TimeoutError) for a in answers):
                        self._abandon(channel)
                    return answers
            # A basic.return names its message only by message id: copies of one message
            # go in separate windows, so that a return fails the copy it concerns.
            results: list[BaseException | None] = [None] * len(items)
            for positions in rounds:
                answers = await self.send_many([items[i] for i in positions])
                for position, answer in zip(positions, answers, strict=True):
                    results[position] = answer
            return results
        answers = await asyncio.gather(
            *(self.send(*item) for item in items), return_exceptions=True)
        return [a if isinstance(a, BaseException) else None for a in answers]

    @contextlib.asynccontextmanager
    async def _sole(self, ids: list[str]) -> AsyncIterator[None]:
        """Holds ``ids`` (distinct) for one publish, after every other publish in flight
        that carries one of them is over."""
        in_flight = self._in_flight
        while busy := {in_flight[i] for i in ids if i in in_flight}:
            await asyncio.wait(busy)
        mine = asyncio.get_running_loop().create_future()
        for message_id in ids:
            in_flight[message_id] = mine
        try:
            yield
        finally:
            for message_id in ids:
                if in_flight.get(message_id) is mine:
                    del in_flight[message_id]
            mine.set_result(None)

    async def close(self) -> None:
        for task in self._closing:
            task.cancel()
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):  # the broker may have dropped it already
                await channel.close()


class RabbitMQProducer:
    """Producer protocol: topic -> exchange; a delay goes through a TTL queue."""

    def __init__(
        self, publisher: Publisher, topology: Topology, options: RabbitMQOptions
    ) -> None:
        self._publisher = publisher
        self._topology = topology
        self._options = options
        self._closed = False

    async def publish(
        self, topic: str, message: Message, *, delay: float | None = None
    ) -> Receipt:
        self._check(topic, delay)
        check_size(message, self._options.max_message_size, "rabbitmq")
        await self._send(topic, message, delay)
        return Receipt(topic=topic, message_id=message.id)

    async def publish_many(
        self, topic: str, messages: Sequence[Message], *, delay: float | None = None
    ) -> list[Receipt]:
        self._check(topic, delay)
        for message in messages:  # refuse the batch before anything is sent
            check_size(message, self._options.max_message_size, "rabbitmq")
        if not messages:
            return []
        await self._topology.exchange(topic)
        items: list[_pipeline.Outgoing] = []
        try:
            for message in messages:
                props = _wire.properties(message)
                exchange, key = topic, _wire.routing_key(message)
                if delay:
                    exchange, key = "", await self._delay_queue(topic, delay, props)
                items.append(_pipeline.Outgoing(exchange, key, message.body, props))
            with _errors.publishing(topic):
                results = await self._publisher.send_many(items)
        except UnibusError as exc:
            results = [exc] * len(messages)
        receipts = [Receipt(topic=topic, message_id=m.id)
                    for m, r in zip(messages, results, strict=True) if r is None]
        if len(receipts) == len(messages):
            return receipts
        failed = next(r for r in results if r is not None)
        if delay:
            for item, result in zip(items, results, strict=False):
                if result is not None:
                    self._topology.forget_ttl_queue(item.routing_key)
        if not isinstance(failed, UnibusError):
            try:
                with _errors.publishing(topic):
                    raise failed
            except UnibusError as mapped:
                failed = mapped
        error: Any = failed
        if not isinstance(error, PublishError):
            error = PublishError(
                f"{len(messages) - len(receipts)} of {len(messages)} messages to "
                f"{topic!r} were not acknowledged: {failed}"
            )
            error.__cause__ = failed
        error.receipts = receipts
        raise error

    async def _delay_queue(self, topic: str, delay: float, props: Basic.Properties) -> str:
        """The TTL queue that delays a message to ``topic`` (declared once), with the
        message's own expiration set on ``props``."""
        tier, exact = tier_ms(delay)
        queue = Names.delay(topic, tier)
        # Dead-lettered with its routing key (the delay queue name): bindings use "#".
        await self._topology.ttl_queue(topic, queue, tier, to_exchange=topic, to_key=None)
        props.expiration = str(exact)
        return queue

    async def _send(self, topic: str, message: Message, delay: float | None) -> None:
        props = _wire.properties(message)
        await self._topology.exchange(topic)
        exchange, key = topic, _wire.routing_key(message)
        if delay:
            exchange, key = "", await self._delay_queue(topic, delay, props)
        try:
            with _errors.publishing(topic):
                await self._publisher.send(exchange, key, message.body, props)
        except PublishError:
            if delay:
                self._topology.forget_ttl_queue(key)
            raise

    def _check(self, topic: str, delay: float | None) -> None:
        if self._closed:
            raise ClosedError("the producer is closed")
        Names.check("topic", topic)
        if delay is None:
            return
        if not delay >= 0:
            raise ConfigError(f"delay must be a non-negative number of seconds, got {delay!r}")
        if delay > self._options.max_delay:
            raise CapabilityError(
                f"delay={delay:g}s",
                f"delays on RabbitMQ go up to max_delay={self._options.max_delay:g}s "
                "(TTL queues; RabbitMQ TTLs are 32-bit milliseconds)",
                backend="rabbitmq",
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._publisher.close()
