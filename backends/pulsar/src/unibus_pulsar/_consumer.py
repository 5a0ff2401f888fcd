"""Consuming: a subscription per group, a fetch task feeding BaseConsumer, settle by ack.

* group -> a durable subscription of the configured type; no group -> a private
  subscription with a unique name, unsubscribed (deleted) at close.
* attempt = the broker's redelivery count + 1, plus the attempts a retry copy carries.
* nack(): negative acknowledgement; the broker redelivers after ``nack_redelivery_delay`` and
  counts it.
* nack(delay) and close: Pulsar counts redeliveries only while the consumer that received a
  message stays connected (a closed consumer's messages come back with count 0), and its
  negative-ack delay is per consumer. So, like the Java client's retry letter topic
  (``reconsumeLater``), a delayed nack, and an unsettled message at close, is written to the
  group's ``<topic>-<group>-RETRY`` topic (``deliver_after`` = the delay) carrying its
  attempt count, and the original is acked; each consumer also subscribes to its retry
  topics. Failover/Exclusive subscriptions neither count redeliveries nor honour
  ``deliver_after``: there every nack goes through the retry topic, a delayed one after
  the message was kept unacknowledged for the delay.
* dead_letter: written to ``<topic>-<group>-DLQ`` with the failure headers, then acked; with
  ``max_attempts`` the client's native dead-letter policy points at the same topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import _pulsar  # type: ignore[import-not-found]
import pulsar  # type: ignore[import-untyped]
import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]

from unibus.base import BaseConsumer, BaseDelivery
from unibus.deadletter import failure_headers
from unibus.errors import ConsumeError, SettlementError, TopologyError, UnibusError
from unibus.positions import Position
from unibus.protocols import StartAt
from unibus_pulsar._bridge import call, subscribe
from unibus_pulsar._delivery import ATTEMPTS, ORIGIN, TOPIC, PulsarDelivery
from unibus_pulsar._errors import boundary, result_name, while_unavailable
from unibus_pulsar._names import decode_position, encode_position

if TYPE_CHECKING:
    from unibus_pulsar._backend import PulsarBackend

__all__ = ["PulsarConsumer"]

log = logging.getLogger("unibus.pulsar")

_OK = pulsar.Result.Ok

#: Messages taken one callback each before the rest of a burst is polled (see _drain).
_BURST = 64

_TYPES = {
    "shared": pulsar.ConsumerType.Shared,
    "key_shared": pulsar.ConsumerType.KeyShared,
    "failover": pulsar.ConsumerType.Failover,
    "exclusive": pulsar.ConsumerType.Exclusive,
}


class _Slots:
    """Prefetch accounting shared by a consumer's fetch tasks: ``free`` is how many more
    messages may be handed to the application before some of them are settled."""

    def __init__(self, size: int) -> None:
        self.free = size
        #: Set whenever ``free`` > 0.
        self.freed = asyncio.Event()
        self.freed.set()

    def take(self, count: int) -> None:
        self.free -= count
        if self.free <= 0:
            self.freed.clear()

    def release(self, count: int = 1) -> None:
        self.free += count
        if self.free > 0:
            self.freed.set()

    async def wait(self) -> None:
        """Until at least one slot is free."""
        while self.free <= 0:
            await self.freed.wait()


class _Receiver:
    """Takes messages from one client consumer, on the event loop's thread.

    The client's ``receive_async`` calls back at once, inside the call, when its receiver
    queue holds a message; only when the queue is empty does the callback come later, from a
    client thread, and only that costs a hop onto the loop. So a burst of messages is taken
    with one hop rather than one per message. At most one receive is outstanding.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._inline: list[tuple[Any, Any]] = []
        self._pending: asyncio.Future[Any] | None = None

    def _done(self, result: Any, msg: Any = None) -> None:
        if threading.get_ident() == self._thread:  # inside receive_async: it was queued
            self._inline.append((result, msg))
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            self._loop.call_soon_threadsafe(self._arrived, result, msg)

    def _arrived(self, result: Any, msg: Any) -> None:
        future = self._pending
        if future is None or future.done():
            return  # abandoned: the message stays unacknowledged and comes back at close
        if result == _OK:
            future.set_result(msg)
        else:
            future.set_exception(pulsar_asyncio.PulsarException(result))

    def take(self, limit: int) -> list[Any]:
        """Up to ``limit`` messages the client already holds, without waiting (the message
        of an outstanding receive that has arrived comes first); raises the client's error.
        When the client runs out, one receive stays outstanding: see :meth:`arrival`."""
        out: list[Any] = []
        pending = self._pending
        if pending is not None:
            if not pending.done():
                return out
            self._pending = None
            out.append(pending.result())
        receive, done, inline = self._inner.receive_async, self._done, self._inline
        while len(out) < limit:
            receive(done)
            if not inline:  # nothing queued: the receive stays outstanding
                self._pending = self._loop.create_future()
                break
            result, msg = inline.pop()
            if result != _OK:
                raise pulsar_asyncio.PulsarException(result)
            out.append(msg)
            if len(out) == _BURST:
                self._drain(out, limit)
                break
        return out

    def _drain(self, out: list[Any], limit: int) -> None:
        """The rest of a burst by the client's non-blocking receive (no callback per
        message); it reports the empty queue with a Timeout, which costs more than a few
        callbacks, so only a long burst comes this way."""
        poll = self._inner.receive
        with contextlib.suppress(_pulsar.Timeout):
            while len(out) < limit:
                out.append(poll(0))

    async def arrival(self) -> None:
        """Until the outstanding receive completes (the next :meth:`take` returns it); call
        it when :meth:`take` returned nothing."""
        assert self._pending is not None, "take() returned messages: take again"
        await asyncio.wait((self._pending,))

    def abandon(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class PulsarConsumer(BaseConsumer):
    backend_name = "pulsar"

    def __init__(self, backend: PulsarBackend, topics: Sequence[str], group: str | None, *,
                 prefetch: int, max_attempts: int | None) -> None:
        super().__init__(topics, group, capabilities=backend.capabilities, prefetch=prefetch,
                         max_attempts=max_attempts)
        self._backend = backend
        self.subscription = group if group is not None else f"unibus-{uuid.uuid4().hex}"
        self._slots = _Slots(prefetch)
        self._ack_now = self._hand_ack
        self._short_names: dict[str, str] = {}
        self._seeking = False
        self._timers: dict[asyncio.TimerHandle, BaseDelivery] = {}
        # The client's consumers (``_pulsar.Consumer``) of the topics and of the retry topics.
        self._pc: Any = None
        self._retry: Any = None

    # -- opening ------------------------------------------------------------------------------

    async def open(self, start: StartAt | None) -> None:
        """Subscribe; afterwards every newly published message reaches the subscription."""
        backend, o = self._backend, self._backend.options
        if o.auto_create:
            for topic in self.topics:
                await backend.topology.ensure_dead_letter(topic, self.group)
        names = backend.names
        what = f"subscribe {self.subscription} to {', '.join(self.topics)}"
        client = backend.client

        async def open_one(topics: list[str], conf: Any) -> Any:
            with boundary(what, TopologyError):
                return await subscribe(client, self._one_or_many(topics), self.subscription,
                                       conf)

        within = o.operation_timeout
        name = f"{o.client_id}-{uuid.uuid4().hex[:8]}"
        retries = self._configuration(name, pulsar.InitialPosition.Earliest, retry=True)
        mains = self._configuration(name, pulsar.InitialPosition.Earliest if start == "earliest"
                                    else pulsar.InitialPosition.Latest, retry=False)
        # Both subscriptions at once: opening a consumer costs one broker round trip, not two.
        made = await asyncio.gather(
            while_unavailable(lambda: open_one(
                [names.topic(self.retry_topic(t)) for t in self.topics], retries),
                within=within),
            while_unavailable(lambda: open_one([names.topic(t) for t in self.topics], mains),
                              within=within),
            return_exceptions=True)
        failed = [r for r in made if isinstance(r, BaseException)]
        if failed:
            for consumer in made:
                if not isinstance(consumer, BaseException):
                    with contextlib.suppress(Exception):
                        await call(consumer.close_async)
            raise failed[0]
        self._retry, self._pc = made
        if isinstance(start, Position | datetime):
            await self._seek(start)
        self._spawn(self._fetch(self._pc))
        self._spawn(self._fetch(self._retry))

    def _configuration(self, name: str, initial_position: Any, *, retry: bool) -> Any:
        o = self._backend.options
        kind = o.subscription_type
        if self.group is None and kind in ("failover", "exclusive"):
            kind = "exclusive"
        conf = _pulsar.ConsumerConfiguration()
        conf.consumer_type(_TYPES[kind])
        conf.consumer_name(name)
        conf.receiver_queue_size(o.receiver_queue_size or self.prefetch)
        conf.negative_ack_redelivery_delay_ms(max(1, int(o.nack_redelivery_delay * 1000)))
        conf.start_message_id_inclusive(True)
        # Partial acks of a batch survive a close where the broker supports them.
        conf.batch_index_ack_enabled(o.batching)
        conf.subscription_initial_position(initial_position)
        policy = self._dead_letter_policy(retry=retry)
        if policy is not None:
            conf.dead_letter_policy(policy.policy())
        return conf

    @staticmethod
    def _one_or_many(topics: list[str]) -> str | list[str]:
        return topics[0] if len(topics) == 1 else topics

    def retry_topic(self, topic: str) -> str:
        return self._backend.names.retry_topic(topic, self.subscription)

    def _dead_letter_policy(self, *, retry: bool) -> Any:
        """Pulsar's native redrive, pointed at the DLQ that dead_letter() writes to.

        It catches a message whose redelivery count passed ``max_attempts`` when it is
        negatively acknowledged again; BaseConsumer dead-letters such a message first, with
        the failure headers, so the native path is the backstop.
        """
        if self.max_attempts is None:
            return None
        names = self._backend.names
        topic = None
        if self.group is None or retry:
            if len(self.topics) > 1:
                return None  # one DLQ topic per source topic; the client takes only one
            topic = names.topic(names.dead_letter_topic(self.topics[0], self.group))
        return pulsar.ConsumerDeadLetterPolicy(
            max_redeliver_count=self.max_attempts,
            dead_letter_topic=topic,
            initial_subscription_name=self._backend.options.dead_letter_subscription,
        )

    @property
    def client_consumer(self) -> Any:
        assert self._pc is not None, "open() first"
        return self._pc

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch(self, pc: Any) -> None:
        """Hand over what the client holds, as many as there are free prefetch slots, then
        wait for the next message to arrive (one thread hop per burst, not per message)."""
        receiver = _Receiver(pc)
        slots = self._slots
        # The topic every message of ``pc`` comes from, when one name says it.
        main = self.topics[0] if pc is self._pc and len(self.topics) == 1 else None
        try:
            while True:
                await slots.wait()
                try:
                    messages = receiver.take(slots.free)
                    if not messages:
                        await receiver.arrival()
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if result_name(exc) == "AlreadyClosed" or self._closing:
                        return
                    log.warning("pulsar receive on %s failed: %s", self.subscription, exc)
                    self._fail(ConsumeError(f"receiving from {', '.join(self.topics)}: {exc}"))
                    return
                if self._seeking and pc is self._pc:
                    continue  # read before the seek: the broker rewinds past them
                slots.take(len(messages))
                if main is not None:
                    # The topic's own messages: the broker's count is the whole count, and
                    # nothing is read from the properties until the message is.
                    self._push_many([PulsarDelivery(self, (pc, msg), main,
                                                    msg.redelivery_count() + 1)
                                     for msg in messages])
                else:
                    delivery = self._delivery
                    self._push_many([delivery(pc, msg) for msg in messages])
        finally:
            # A receive still outstanding completes into nothing; its message stays
            # unacknowledged and comes back when the consumer closes.
            receiver.abandon()

    def _delivery(self, pc: Any, msg: Any) -> PulsarDelivery:
        if pc is self._pc:
            # From the topic itself, where the broker's count is the whole count: nothing to
            # read from the properties until the message is.
            topic = (self.topics[0] if len(self.topics) == 1
                     else self._short_name(msg.topic_name()))
            return PulsarDelivery(self, (pc, msg), topic, msg.redelivery_count() + 1)
        # A retry copy carries the attempts before it, its topic and its original position;
        # a replayed dead letter has no original position: it is where it was written.
        properties = msg.properties()
        earlier = int(properties.pop(ATTEMPTS, "0") or 0)
        origin = properties.pop(ORIGIN, None)
        here = self._short_name(msg.topic_name())
        topic = properties.pop(TOPIC, None) or here
        return PulsarDelivery(self, (pc, msg), topic, earlier + msg.redelivery_count() + 1,
                              properties,
                              Position(topic=topic, offset=origin) if origin
                              else encode_position(here, msg.message_id()))

    def _short_name(self, full: str) -> str:
        short = self._short_names.get(full)
        if short is None:
            short = self._short_names[full] = self._backend.names.short(full)
        return short

    async def _retry_later(self, delivery: BaseDelivery, delay: float) -> None:
        """Write ``delivery`` to its retry topic (counted, delayed), then ack the original."""
        message, position = delivery.message, delivery.position
        await self._backend.unbatched_producer.send_retry(
            delivery.topic, self.subscription, message, attempts=delivery.attempt,
            origin=None if position is None else str(position.offset), delay=delay)
        pc, msg = delivery.raw
        with boundary(f"ack {message.id} after scheduling its retry", SettlementError):
            await call(lambda done: pc.acknowledge_async(msg, done))

    # -- settling -----------------------------------------------------------------------------

    async def _ack(self, delivery: BaseDelivery) -> None:
        self._hand_ack(delivery)

    def _hand_ack(self, delivery: BaseDelivery) -> None:
        # Pulsar sends no receipt for an acknowledgement: the client groups acks and sends
        # them within 100 ms (and on close). Handing it over is all there is to wait for, so
        # no thread round trip per ack. The client's acknowledge() returns when its grouping
        # tracker took the ack (ack receipts, which would make it wait, are not enabled), so
        # it does not block the loop, and it costs less than a callback into Python per ack.
        # A failure is logged and the broker redelivers.
        pc, msg = delivery.raw
        try:
            pc.acknowledge(msg)
        except _pulsar.PulsarException as exc:
            log.warning("pulsar: an acknowledgement failed (%s); the broker will redeliver",
                        result_name(exc) or exc)
        finally:
            slots = self._slots  # _Slots.release(), inlined: once per message
            slots.free += 1
            if slots.free == 1:
                slots.freed.set()

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        o = self._backend.options
        try:
            if not o.competing:
                # Failover/Exclusive: the broker neither counts redeliveries nor delays them.
                if delay > 0:
                    self._hold(delivery, delay)
                else:
                    await self._retry_later(delivery, 0.0)
            elif delay <= o.nack_redelivery_delay:
                self._negative_ack(delivery)
            else:
                await self._retry_later(delivery, delay)
        finally:
            self._slots.release()

    def _hold(self, delivery: BaseDelivery, wait: float) -> None:
        """Keep ``delivery`` unacknowledged for ``wait`` seconds, then retry it (counted)."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.pop(handle, None)
            if not self._closing:
                self._spawn(self._retry_held(delivery))

        handle = loop.call_later(wait, fire)
        self._timers[handle] = delivery

    def _negative_ack(self, delivery: BaseDelivery) -> None:
        # Non-blocking in the client: it records the id, and a client timer asks the broker
        # for the redelivery (counted) after the nack delay.
        if self._closed:
            return
        pc, msg = delivery.raw
        with boundary("negative ack", SettlementError):
            pc.negative_acknowledge(msg)

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        try:
            message = delivery.message
            headers = failure_headers(message, topic=delivery.topic, group=self.group,
                                      reason=reason, attempts=delivery.attempt)
            dead = message.with_headers(**headers)
            await self._backend.dead_letter_writer.write(delivery.topic, self.group, dead)
            pc, msg = delivery.raw
            with boundary(f"ack dead-lettered {message.id}", SettlementError):
                await call(lambda done: pc.acknowledge_async(msg, done))
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
        inner = self.client_consumer
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
        for delivery in deliveries:
            self._slots.release()
            pc, _ = delivery.raw
            if self._seeking and pc is self._pc:
                continue  # the broker rewinds past it
            if self._seeking:
                self._negative_ack(delivery)
            else:
                await self._give_back(delivery)

    async def _retry_held(self, delivery: BaseDelivery) -> None:
        try:
            await self._retry_later(delivery, 0.0)
        except UnibusError as exc:  # it stays unacknowledged: redelivered at close
            log.warning("pulsar: could not retry %s: %s", delivery.message.id, exc)

    async def _give_back(self, delivery: BaseDelivery) -> None:
        """At close: a closed consumer's messages come back uncounted, so an unsettled one
        goes to the retry topic carrying its attempts (a private subscription just ends)."""
        if self.group is None:
            return
        try:
            await self._retry_later(delivery, 0.0)
        except UnibusError as exc:  # the broker redelivers it anyway, uncounted
            log.warning("pulsar: could not requeue %s at close: %s", delivery.message.id, exc)

    async def _finish(self) -> None:
        timers, self._timers = self._timers, {}
        for handle, delivery in timers.items():
            handle.cancel()
            await self._give_back(delivery)
        for pc in (self._pc, self._retry):
            if pc is None:
                continue
            try:
                with boundary(f"close {self.subscription}", ConsumeError):
                    if self.group is None:
                        await call(pc.unsubscribe_async)
                    else:
                        await call(pc.close_async)
            except UnibusError as exc:
                log.warning("pulsar consumer close: %s", exc)
                with contextlib.suppress(Exception):
                    await call(pc.close_async)
