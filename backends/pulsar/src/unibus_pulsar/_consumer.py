"""Consuming: a subscription per group, a fetch task feeding BaseConsumer, settle by ack.

* group -> a durable subscription of the configured type; no group -> a private
  subscription with a unique name, unsubscribed (deleted) at close.
* attempt = the broker's redelivery count + 1.
* nack(delay): the message stays unacknowledged (no other member gets it) and is negatively
  acknowledged when the delay has passed, so the broker redelivers it and counts it. Nothing
  else waits for it.
* dead_letter: written to ``<topic>-<group>-DLQ`` with the failure headers, then acked; with
  ``max_attempts`` the client's native dead-letter policy points at the same topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pulsar  # type: ignore[import-untyped]
import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]

from unibus.base import BaseConsumer, BaseDelivery
from unibus.deadletter import failure_headers
from unibus.errors import ConsumeError, SettlementError, TopologyError
from unibus.message import Message
from unibus.positions import Position
from unibus.protocols import StartAt
from unibus_pulsar._bridge import call
from unibus_pulsar._errors import boundary, result_name
from unibus_pulsar._names import decode_position, encode_position

if TYPE_CHECKING:
    from unibus_pulsar._backend import PulsarBackend

__all__ = ["PulsarConsumer"]

log = logging.getLogger("unibus.pulsar")

_TYPES = {
    "shared": pulsar.ConsumerType.Shared,
    "key_shared": pulsar.ConsumerType.KeyShared,
    "failover": pulsar.ConsumerType.Failover,
    "exclusive": pulsar.ConsumerType.Exclusive,
}


class PulsarConsumer(BaseConsumer):
    backend_name = "pulsar"

    def __init__(self, backend: PulsarBackend, topics: Sequence[str], group: str | None, *,
                 prefetch: int, max_attempts: int | None) -> None:
        super().__init__(topics, group, capabilities=backend.capabilities, prefetch=prefetch,
                         max_attempts=max_attempts)
        self._backend = backend
        self.subscription = group if group is not None else f"unibus-{uuid.uuid4().hex}"
        self._slots = asyncio.Semaphore(prefetch)
        self._seeking = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._pc: pulsar_asyncio.Consumer | None = None

    # -- opening ------------------------------------------------------------------------------

    async def open(self, start: StartAt | None) -> None:
        """Subscribe; afterwards every newly published message reaches the subscription."""
        backend, o = self._backend, self._backend.options
        kind = o.subscription_type
        if self.group is None and kind in ("failover", "exclusive"):
            kind = "exclusive"
        kwargs: dict[str, Any] = {
            "consumer_type": _TYPES[kind],
            "receiver_queue_size": o.receiver_queue_size or self.prefetch,
            "negative_ack_redelivery_delay_ms": max(1, int(o.nack_redelivery_delay * 1000)),
            "initial_position": (pulsar.InitialPosition.Earliest if start == "earliest"
                                 else pulsar.InitialPosition.Latest),
            "start_message_id_inclusive": True,
            "consumer_name": f"{o.client_id}-{uuid.uuid4().hex[:8]}",
        }
        policy = self._dead_letter_policy()
        if policy is not None:
            kwargs["dead_letter_policy"] = policy
        if o.auto_create:
            for topic in self.topics:
                await backend.topology.ensure_dead_letter(topic, self.group)
        full = [backend.names.topic(t) for t in self.topics]
        with boundary(f"subscribe {self.subscription} to {', '.join(self.topics)}",
                      TopologyError):
            self._pc = await backend.client.subscribe(
                full if len(full) > 1 else full[0], self.subscription, **kwargs)
        if isinstance(start, Position | datetime):
            await self._seek(start)
        self._spawn(self._fetch())

    def _dead_letter_policy(self) -> pulsar.ConsumerDeadLetterPolicy | None:
        """Pulsar's native redrive, pointed at the DLQ that dead_letter() writes to.

        It catches a message whose redelivery count passed ``max_attempts`` when it is
        negatively acknowledged again; BaseConsumer dead-letters such a message first, with
        the failure headers, so the native path is the backstop.
        """
        if self.max_attempts is None:
            return None
        names = self._backend.names
        topic = None
        if self.group is None:
            if len(self.topics) > 1:
                return None  # one DLQ topic per source topic; the client takes only one
            topic = names.topic(names.dead_letter_topic(self.topics[0], None))
        return pulsar.ConsumerDeadLetterPolicy(
            max_redeliver_count=self.max_attempts,
            dead_letter_topic=topic,
            initial_subscription_name=self._backend.options.dead_letter_subscription,
        )

    @property
    def client_consumer(self) -> pulsar_asyncio.Consumer:
        assert self._pc is not None, "open() first"
        return self._pc

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch(self) -> None:
        pc = self.client_consumer
        while True:
            await self._slots.acquire()
            try:
                msg = await pc.receive()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                if result_name(exc) == "AlreadyClosed" or self._closing:
                    return
                log.warning("pulsar receive on %s failed: %s", self.subscription, exc)
                self._fail(ConsumeError(f"receiving from {', '.join(self.topics)}: {exc}"))
                return
            if self._seeking:
                self._slots.release()  # read before the seek: the broker rewinds past it
                continue
            self._push(self._delivery(msg))

    def _delivery(self, msg: pulsar.Message) -> BaseDelivery:
        topic = self._backend.names.short(msg.topic_name())
        message = Message.from_wire(msg.data(), msg.properties(),
                                    key=msg.partition_key() or None)
        return BaseDelivery(self, message, topic=topic, attempt=msg.redelivery_count() + 1,
                            position=encode_position(topic, msg.message_id()), raw=msg)

    # -- settling -----------------------------------------------------------------------------

    async def _ack(self, delivery: BaseDelivery) -> None:
        try:
            with boundary(f"ack {delivery.message.id} on {delivery.topic}", SettlementError):
                await self.client_consumer.acknowledge(delivery.raw)
        finally:
            self._slots.release()

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        self._slots.release()
        wait = delay - self._backend.options.nack_redelivery_delay
        if wait <= 0:
            self._negative_ack(delivery.raw)
            return
        # Unacknowledged until then: no other member gets it, nothing else waits for it.
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._negative_ack(delivery.raw)

        handle = loop.call_later(wait, fire)
        self._timers.add(handle)

    def _negative_ack(self, msg: pulsar.Message) -> None:
        # Non-blocking in the client: it records the id; a client timer asks for redelivery.
        if self._closed:
            return
        with boundary("negative ack", SettlementError):
            self.client_consumer._consumer.negative_acknowledge(msg._message)

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        try:
            message = delivery.message
            headers = failure_headers(message, topic=delivery.topic, group=self.group,
                                      reason=reason, attempts=delivery.attempt)
            dead = message.with_headers(**headers)
            await self._backend.dead_letter_writer.write(delivery.topic, self.group, dead)
            with boundary(f"ack dead-lettered {message.id}", SettlementError):
                await self.client_consumer.acknowledge(delivery.raw)
        finally:
            self._slots.release()

    # -- replay -------------------------------------------------------------------------------

    async def _seek(self, to: StartAt) -> None:
        target: Any
        if to == "earliest":
            target = pulsar.MessageId.earliest
        elif to == "latest":
            target = pulsar.MessageId.latest
        elif isinstance(to, datetime):
            target = int(to.timestamp() * 1000)
        elif isinstance(to, Position):
            target = decode_position(to)._msg_id
        else:
            target = to
        inner = self.client_consumer._consumer
        self._seeking = True
        try:
            with boundary(f"seek {self.subscription} to {to!r}", ConsumeError):
                await call(lambda done: inner.seek_async(target, done))
        finally:
            self._seeking = False

    # -- closing ------------------------------------------------------------------------------

    async def _stop_fetching(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        # At close the broker gets them back in _finish (one redeliver request, counted);
        # at a seek it rewinds past them.
        for _ in deliveries:
            self._slots.release()

    async def _finish(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        pc = self._pc
        if pc is None:
            return
        # Everything still unacknowledged (unsettled, or waiting for a delayed nack) goes back
        # to the subscription now, with its redelivery counted, instead of lingering.
        with contextlib.suppress(Exception):
            pc.redeliver_unacknowledged_messages()
        try:
            with boundary(f"close {self.subscription}", ConsumeError):
                if self.group is None:
                    await pc.unsubscribe()
                else:
                    await pc.close()
        except ConsumeError as exc:
            log.warning("pulsar consumer close: %s", exc)
            with contextlib.suppress(Exception):
                await pc.close()
