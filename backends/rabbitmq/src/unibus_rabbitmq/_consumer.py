"""Consuming group queues (or a private queue) with the callback API, the fastest path."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from unibus.base import BaseConsumer, BaseDelivery
from unibus.capabilities import Capabilities
from unibus.deadletter import failure_headers
from unibus.errors import ConsumeError
from unibus_rabbitmq import _errors, _pipeline, _wire
from unibus_rabbitmq._options import RabbitMQOptions
from unibus_rabbitmq._producer import Publisher, Unconfirmed
from unibus_rabbitmq._topology import Names, Topology, tier_ms

__all__ = ["RabbitMQConsumer"]

#: Seconds to wait for the broker while closing (it may be gone).
_QUICK = 5.0


class RabbitMQConsumer(BaseConsumer):
    """One robust channel with QoS ``prefetch``; one queue per topic.

    Settlement: ack -> basic.ack; nack() on a quorum queue -> basic.nack(requeue) (the
    broker counts it in x-delivery-count); nack() elsewhere and nack(delay) -> republish
    (confirmed) to the queue or to its TTL retry queue with the attempt count in a header,
    then ack; dead_letter -> publish (confirmed) with failure headers to the topic's DLX,
    then ack.
    """

    backend_name = "rabbitmq"

    def __init__(
        self,
        topics: Sequence[str],
        group: str | None,
        *,
        capabilities: Capabilities,
        prefetch: int,
        max_attempts: int | None,
        connection: AbstractRobustConnection,
        topology: Topology,
        republisher: Publisher,
        options: RabbitMQOptions,
    ) -> None:
        super().__init__(topics, group, capabilities=capabilities, prefetch=prefetch,
                         max_attempts=max_attempts)
        self._connection = connection
        self._topology = topology
        self._republisher = republisher
        self._options = options
        self._queues: dict[str, str] = {}
        self._private_args: dict[str, dict[str, Any]] = {}
        self._channel: AbstractRobustChannel | None = None
        self._tags: dict[str, str] = {}  # consumer tag -> queue, on _subscribed_on
        self._subscribed_on: Any = None
        self._resuming: asyncio.Task[None] | None = None
        self._stopped = False
        # Quorum queues count deliveries; requeueing there keeps the count exact.
        self._counted = group is not None and options.queue_type == "quorum"
        self._acks = _pipeline.Acks()

    # -- start and recovery -----------------------------------------------------------------

    async def start(self) -> None:
        """Declare and bind the queues, then consume: the subscription exists on return."""
        for topic in self.topics:
            if self.group is not None:
                queue = await self._topology.group(topic, self.group,
                                                   max_attempts=self.max_attempts)
            else:
                await self._topology.exchange(topic)
                dlq = await self._topology.dead_letters(topic, None)
                queue = Names.private_queue(topic, self._options.client_id)
                self._private_args[queue] = self._topology.group_arguments(
                    topic, dlq, None, private=True
                )
            self._queues[topic] = queue
        with _errors.consuming(f"consume {', '.join(self.topics)}"):
            channel = self._connection.channel(publisher_confirms=False)
            await channel.initialize(timeout=self._options.connect_timeout)
            self._channel = channel
            await channel.set_qos(prefetch_count=self.prefetch)
            channel.reopen_callbacks.add(self._on_reopen)
            await self._subscribe()

    async def _subscribe(self) -> None:
        """Consume every queue on the current channel (those not consumed there yet)."""
        assert self._channel is not None
        channel = await self._channel.get_underlay_channel()
        if channel is not self._subscribed_on:
            self._subscribed_on = channel
            self._tags.clear()
            channel.on_consumer_cancel_callbacks.add(self._on_cancel)
        for topic, queue in self._queues.items():
            if queue in self._tags.values():
                continue
            if queue in self._private_args:
                await channel.queue_declare(
                    queue=queue, exclusive=True, auto_delete=True,
                    arguments=self._private_args[queue],
                )
                await channel.queue_bind(queue=queue, exchange=topic, routing_key="#")
            ok = await channel.basic_consume(
                queue, functools.partial(self._on_message, topic), no_ack=False
            )
            if ok.consumer_tag is not None:
                self._tags[ok.consumer_tag] = queue

    async def _on_reopen(self, *_: Any) -> None:
        """The connection came back: deliveries of the dead channel cannot be settled any
        more (the broker requeued them), so drop them and consume again."""
        if self._stopped:
            return
        for delivery in self._take_buffered():
            if not delivery.raw.channel.is_closed:
                self._push(delivery)
        if self._resuming is None or self._resuming.done():
            self._resuming = self._spawn(self._resume())

    async def _resume(self) -> None:
        """Consume again; a restarted broker may need a while before its queues answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(60.0, 3 * self._options.connect_timeout)
        while not self._stopped:
            try:
                with _errors.consuming(f"resume consuming {', '.join(self.topics)}"):
                    await self._subscribe()
                return
            except Exception as exc:
                if loop.time() > deadline:
                    self._fail(exc if isinstance(exc, ConsumeError) else ConsumeError(str(exc)))
                    return
            await asyncio.sleep(self._options.reconnect_interval)  # retry pacing

    def _on_cancel(self, frame: Any) -> None:
        if not self._stopped and frame.consumer_tag in self._tags:
            self._fail(ConsumeError(
                f"the broker cancelled consumption of {', '.join(self._queues.values())} "
                "(queue deleted?)"
            ))

    async def _on_message(self, topic: str, raw: aiormq.abc.DeliveredMessage) -> None:
        if self._stopped:
            return  # not handed out: requeued when the channel closes
        try:
            message, incoming = _wire.decode(raw)
        except Exception:
            # Undecodable: let the queue's native DLX take it instead of looping forever.
            with contextlib.suppress(Exception):
                await raw.channel.basic_reject(raw.delivery_tag or 0, requeue=False)
            return
        self._push(BaseDelivery(self, message, topic=topic, attempt=incoming.attempt, raw=raw))

    # -- settlement hooks -------------------------------------------------------------------

    def _ack_now(self, delivery: BaseDelivery) -> None:
        """An ack joins the others of this loop turn in one write (see ``_pipeline.Acks``);
        like ``basic_ack(wait=False)`` in :meth:`_ack`, it is queued, in order, for the
        connection's writer: AMQP acks have no reply to wait for."""
        raw: aiormq.abc.DeliveredMessage = delivery.raw
        with _errors.settling("ack"):
            self._acks.add(raw.channel, raw.delivery_tag or 0)  # type: ignore[arg-type]

    async def _ack(self, delivery: BaseDelivery) -> None:
        raw: aiormq.abc.DeliveredMessage = delivery.raw
        with _errors.settling("ack"):
            # Queued in order on the channel's writer; waiting for the socket flush would
            # serialise acks without making them any more certain (AMQP acks have no reply).
            await raw.channel.basic_ack(raw.delivery_tag or 0, wait=False)

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        raw: aiormq.abc.DeliveredMessage = delivery.raw
        queue = target = self._queues[delivery.topic]
        tier, exact = tier_ms(min(delay, self._options.max_delay)) if delay else (0, 0)
        if delay:
            target = Names.retry(queue, tier)
            if self._topology.unanswered(target):
                delay, target = 0.0, queue  # see Topology.unanswered
        if not delay and self._counted:
            with _errors.settling("nack"):
                await raw.channel.basic_nack(raw.delivery_tag or 0, requeue=True)
            return
        props = _wire.properties(delivery.message, attempts=delivery.attempt)
        async with self._or_requeue(raw, "nack"):
            if delay:
                await self._topology.ttl_queue(delivery.topic, target, tier,
                                               to_exchange="", to_key=queue)
                props.expiration = str(exact)
            try:
                await self._republisher.send("", target, delivery.message.body, props)
            except Exception as exc:
                self._topology.forget_ttl_queue(target)
                if delay and isinstance(exc, Unconfirmed):
                    self._topology.confirmed_nothing(target)
                raise
            await raw.channel.basic_ack(raw.delivery_tag or 0, wait=False)

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        raw: aiormq.abc.DeliveredMessage = delivery.raw
        headers = failure_headers(delivery.message, topic=delivery.topic, group=self.group,
                                  reason=reason, attempts=delivery.attempt)
        message = delivery.message.with_headers(**headers)
        props = _wire.properties(message)
        props.expiration = None  # a dead letter waits for review, it does not expire
        async with self._or_requeue(raw, "dead-lettering"):
            await self._republisher.send(
                Names.dlx(delivery.topic), Names.dlq(delivery.topic, self.group),
                message.body, props,
            )
            await raw.channel.basic_ack(raw.delivery_tag or 0, wait=False)

    @contextlib.asynccontextmanager
    async def _or_requeue(
        self, raw: aiormq.abc.DeliveredMessage, what: str
    ) -> AsyncIterator[None]:
        """A settlement by republishing that fails hands the original back to the broker
        (it would otherwise stay unacknowledged on a live channel) and raises
        SettlementError: the message is redelivered."""
        try:
            with _errors.settling(what):
                yield
        except BaseException:
            with contextlib.suppress(Exception):
                if not raw.channel.is_closed:
                    await raw.channel.basic_nack(raw.delivery_tag or 0, requeue=True)
            raise

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        for delivery in deliveries:
            raw: aiormq.abc.DeliveredMessage = delivery.raw
            # On a dead channel the broker has requeued it already.
            with contextlib.suppress(Exception):
                if not raw.channel.is_closed:
                    await raw.channel.basic_nack(raw.delivery_tag or 0, requeue=True)

    async def _stop_fetching(self) -> None:
        self._stopped = True
        await self._acks.drain()
        channel = self._channel
        if channel is None:
            return
        channel.reopen_callbacks.discard(self._on_reopen)
        with contextlib.suppress(Exception):
            underlay = await asyncio.wait_for(channel.get_underlay_channel(), _QUICK)
            for tag in list(self._tags):
                await underlay.basic_cancel(tag, timeout=_QUICK)

    async def _finish(self) -> None:
        await self._acks.drain()
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), _QUICK)
