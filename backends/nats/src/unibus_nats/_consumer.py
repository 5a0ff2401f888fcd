"""JetStream consumers: pull subscriptions on durable (group) or ephemeral consumers.

Each topic gets a pull subscription and a fetch task that asks for at most ``prefetch`` minus
what is still unsettled, in batches, with a short long-poll. Settlement maps onto JetStream
acks: ack -> +ACK (or a confirmed ack with ``double_ack``), nack(delay) -> -NAK with delay,
dead_letter -> publish to the DLQ stream, then +TERM. While a delivery is unsettled, a
heartbeat task sends +WPI (in progress) so long handlers are not redelivered after ack_wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from unibus.base import BaseConsumer, BaseDelivery
from unibus.capabilities import Capabilities
from unibus.errors import ConfigError, InvalidMessageError
from unibus.message import Message
from unibus.positions import Position
from unibus.protocols import StartAt
from unibus_nats import _names
from unibus_nats._dead_letters import DeadLetterWriter
from unibus_nats._errors import boundary, is_not_found, is_transient
from unibus_nats._options import NATSOptions
from unibus_nats._topology import Topology
from unibus_nats._wire import REPLAY_GROUP, from_nats

__all__ = ["JetStreamConsumer", "NATSDelivery"]

log = logging.getLogger("unibus.nats")

#: How long before a pull request's expiry the next one goes out (at most a quarter of it).
_RENEW_LEAD = 0.1
#: How long after a pull request's expiry it is over even without the server's 408.
_EXPIRY_GRACE = 0.05


class NATSDelivery(BaseDelivery):
    __slots__ = ()

    async def in_progress(self) -> None:
        """Tell the server the handler is still working: resets the ack_wait timer.
        The consumer already does this periodically for every unsettled delivery."""
        msg: Msg = self.raw
        with boundary("settle", "in-progress ack"):
            await msg.in_progress()


class _Pull:
    """One topic's JetStream consumer, our inbox for it, and the pull requests in flight.

    Every request has its own reply subject (``<inbox>.<n>``) under one wildcard
    subscription, so a status tells which request it ends. Deliveries carry the stream's
    subject instead: they fill the oldest request not yet expired, as the server does."""

    def __init__(self, topic: str, consumer: str, durable: bool) -> None:
        self.topic = topic
        self.stream = _names.stream_name(topic)
        self.consumer = consumer
        self.durable = durable
        self.sub: Subscription | None = None
        self.inbox = ""
        self.task: asyncio.Task[None] | None = None
        self.number = 0  # of the newest request
        self.owed: dict[str, int] = {}  # open request's reply subject -> messages it may bring
        self.deadlines: dict[str, float] = {}  # open request -> its expiry (time.monotonic)
        self.changed = asyncio.Event()  # a request ended or was filled
        self.missing = False  # the server said the consumer is gone
        self.last_sequence = 0  # the newest stream sequence delivered to us
        self.start: StartAt | None = None


class JetStreamConsumer(BaseConsumer):
    backend_name = "nats"

    def __init__(
        self,
        topics: Sequence[str],
        group: str | None,
        *,
        capabilities: Capabilities,
        prefetch: int,
        max_attempts: int | None,
        nc: Client,
        js: JetStreamContext,
        topology: Topology,
        writer: DeadLetterWriter,
        options: NATSOptions,
    ) -> None:
        super().__init__(topics, group, capabilities=capabilities, prefetch=prefetch,
                         max_attempts=max_attempts)
        self.nc = nc
        self.js = js
        self.topology = topology
        self.writer = writer
        self.options = options
        self._pulls: list[_Pull] = []
        self._outstanding: set[BaseDelivery] = set()  # fetched, not settled or released
        self._room = asyncio.Event()
        self._stopping = False

    # -- setup ------------------------------------------------------------------------------

    async def start(self, start: StartAt | None) -> None:
        """Create (or join) the consumers; afterwards every new message reaches us."""
        for topic in self.topics:
            _names.subject(topic)
        if isinstance(start, Position) and start.topic not in self.topics:
            raise ConfigError(f"start {start!r} is not in the topics {self.topics}")
        try:
            for topic in self.topics:
                if self.group is not None:
                    name = await self.topology.ensure_consumer(
                        topic, self.group, start=self._start_for(topic, start),
                        max_attempts=self.max_attempts)
                    pull = _Pull(topic, name, durable=True)
                    pull.start = self._start_for(topic, start)
                else:
                    pull = _Pull(topic, f"unibus-{uuid.uuid4().hex[:16]}", durable=False)
                    pull.start = self._start_for(topic, start)
                    await self._create(pull, pull.start)
                self._pulls.append(pull)
                await self._bind(pull)
        except BaseException:
            await self._finish()
            raise
        for pull in self._pulls:
            self._run(pull)
        self._spawn(self._heartbeat())

    def _start_for(self, topic: str, start: StartAt | None) -> StartAt | None:
        if isinstance(start, Position) and start.topic != topic:
            return None
        return start

    async def _create(self, pull: _Pull, start: StartAt | None) -> None:
        config = self.topology.consumer_config(
            pull.topic, pull.consumer, durable=pull.durable, start=start,
            max_attempts=self.max_attempts)
        await self.topology.create_consumer(pull.topic, config)

    async def _bind(self, pull: _Pull) -> None:
        async def on_message(msg: Msg) -> None:
            self._on_pulled(pull, msg)

        pull.inbox = self.nc.new_inbox()
        pull.owed.clear()
        pull.deadlines.clear()
        with boundary("consume", f"subscribing to {pull.topic!r}"):
            pull.sub = await self.nc.subscribe(
                f"{pull.inbox}.*", cb=on_message, pending_msgs_limit=-1,
                pending_bytes_limit=-1)

    def _run(self, pull: _Pull) -> None:
        pull.task = self._spawn(self._fetch_loop(pull))

    # -- fetching ---------------------------------------------------------------------------

    async def _fetch_loop(self, pull: _Pull) -> None:
        """One pull request at a time for what fits under ``prefetch``, a long-poll of
        ``fetch_timeout``; the next one goes out shortly before it expires, so the server
        always holds a request that is still valid. (A 2.9 server with a message ready
        just after a request expired, before its timer swept it, drops that request without
        the 408 status; and if no other valid request is waiting and the message was a
        redelivery, it rewinds the consumer and sends the message again as delivery 1.)
        On stopping, the loop waits for its requests to end, so none is left on the server
        to deliver to a consumer that stopped asking."""
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{pull.stream}.{pull.consumer}"
        timeout = self.options.fetch_timeout
        expires = int(timeout * 1e9)
        lead = min(_RENEW_LEAD, timeout / 4)
        deadlines = pull.deadlines
        clock = time.monotonic
        failures = 0
        while not self._stopping:
            if pull.missing:
                failures += 1
                await asyncio.sleep(min(0.2 * failures, 2.0))  # back off, then repair
                await self._recreate(pull)
                continue
            now = clock()
            _drop_ended(pull, deadlines, now)
            # A request about to expire no longer counts: its successor asks for its room.
            live = [r for r, d in deadlines.items() if d - lead > now]
            room = self.prefetch - len(self._outstanding) - sum(pull.owed[r] for r in live)
            if live or room <= 0:
                wake = min((deadlines[r] - lead for r in live), default=now + timeout)
                await self._wait_for_change(pull, wake - now)
                continue
            pull.number += 1
            reply = f"{pull.inbox}.{pull.number}"
            pull.owed[reply] = room
            deadlines[reply] = clock() + timeout
            try:
                await self.nc.publish(next_subject, json.dumps(
                    {"batch": room, "expires": expires}).encode(), reply=reply)
            except Exception as exc:  # the client reconnects by itself; keep asking
                pull.owed.pop(reply, None)
                del deadlines[reply]
                if self._stopping:
                    break
                failures += 1
                if not is_transient(exc):
                    log.warning("pulling from %s failed (%r); retrying", pull.topic, exc)
                await asyncio.sleep(min(0.1 * failures, 2.0))  # back off while reconnecting
                continue
            failures = 0
        while _drop_ended(pull, deadlines, clock()):  # stopping: the open requests end
            await self._wait_for_change(pull, min(deadlines.values()) + _EXPIRY_GRACE - clock())

    async def _wait_for_change(self, pull: _Pull, timeout: float) -> None:
        """Until a request of ``pull`` ends or fills, room frees up, or ``timeout``."""
        pull.changed.clear()
        self._room.clear()
        waiters = [asyncio.ensure_future(pull.changed.wait()),
                   asyncio.ensure_future(self._room.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(timeout, 0.001),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _recreate(self, pull: _Pull) -> None:
        """The consumer vanished (deleted, or a server that lost its state): create it again,
        continuing after the last message we saw."""
        pull.missing = False
        try:
            await self.js.consumer_info(pull.stream, pull.consumer)
            return
        except Exception as exc:
            if not is_not_found(exc):
                return  # not reachable yet; the next request tells
        start = (Position(pull.topic, pull.last_sequence + 1) if pull.last_sequence
                 else pull.start)
        log.warning("consumer %s of %s is gone; recreating it", pull.consumer, pull.topic)
        self.topology.forget(pull.topic)
        try:
            await self._create(pull, start)
        except Exception as exc:
            log.warning("recreating consumer %s failed: %r", pull.consumer, exc)

    def _on_pulled(self, pull: _Pull, msg: Msg) -> None:
        request = msg.subject
        if not msg.reply:  # a status: 100 heartbeat, 404/408 nothing (more), 409 ...
            headers = msg.headers or {}
            status = headers.get("Status")
            if status == "503" or "Consumer Deleted" in str(headers.get("Description", "")):
                pull.missing = True
            if status != "100" and pull.owed.pop(request, None) is not None:
                pull.changed.set()
            return
        self._deliver(pull, msg)
        now = time.monotonic()
        for request, owed in pull.owed.items():
            if pull.deadlines[request] > now:
                if owed <= 1:
                    del pull.owed[request]
                    pull.changed.set()
                else:
                    pull.owed[request] = owed - 1
                return

    def _deliver(self, pull: _Pull, msg: Msg) -> None:
        sequence, delivered = _sequence_and_count(msg)
        if sequence > pull.last_sequence:
            pull.last_sequence = sequence
        try:
            message = from_nats(msg.data, msg.headers)
        except InvalidMessageError:
            message = Message(body=msg.data)  # a foreign producer's unusable headers
        if REPLAY_GROUP in message.headers:
            headers = dict(message.headers)
            if headers.pop(REPLAY_GROUP) != self.group:  # another group's DLQ replay
                self._spawn(_skip(msg))
                return
            message = message.replace(headers=headers)
        delivery = NATSDelivery(
            self, message, topic=pull.topic, attempt=delivered,
            position=Position(pull.topic, sequence), raw=msg)
        self._outstanding.add(delivery)
        self._push(delivery)

    async def _heartbeat(self) -> None:
        """Every unsettled delivery's ack_wait is reset, while the consumer is open.

        It ends when the consumer has closed, not only when cancelled: nats-py's publish
        (in_progress) can swallow a cancellation (its flush catches CancelledError, and on
        Python 3.11 ``asyncio.wait_for`` drops one that arrives as the wait completes), and a
        heartbeat that carried on would hold ``close()`` forever. It still runs while
        ``close()`` drains, so the deliveries being finished stay invisible."""
        period = min([self.options.ack_wait, *self.options.backoff]) / 3
        while not self._closed:
            await asyncio.sleep(max(period, 0.05))  # periodic work, not synchronisation
            for delivery in list(self._outstanding):
                if not delivery.settled:
                    with contextlib.suppress(Exception):
                        await delivery.raw.in_progress()

    def _forget(self, delivery: BaseDelivery) -> None:
        self._outstanding.discard(delivery)
        self._room.set()

    # -- settlement hooks -------------------------------------------------------------------

    async def _ack(self, delivery: BaseDelivery) -> None:
        msg: Msg = delivery.raw
        try:
            if self.options.double_ack:
                await msg.ack_sync(timeout=self.options.publish_timeout)
            else:
                await msg.ack()  # on the wire with the next flush, as nats-py's ack does
        except Exception:
            with boundary("settle", f"acking {delivery.message.id}"):
                raise
        finally:
            self._forget(delivery)

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        msg: Msg = delivery.raw
        try:
            with boundary("settle", f"nacking {delivery.message.id}"):
                await msg.nak(delay=delay or None)
        finally:
            self._forget(delivery)

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        msg: Msg = delivery.raw
        try:
            await self.writer.write(
                delivery.topic, self.group, delivery.message, reason=reason,
                attempts=delivery.attempt, sequence=msg.metadata.sequence.stream)
            with boundary("settle", f"terminating {delivery.message.id}"):
                await msg.term()
        finally:
            self._forget(delivery)

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        for delivery in deliveries:
            self._forget(delivery)
            with contextlib.suppress(Exception):  # lost connection: ack_wait redelivers
                await delivery.raw.nak()

    # -- replay -----------------------------------------------------------------------------

    async def _seek(self, to: StartAt) -> None:
        if isinstance(to, Position) and to.topic not in self.topics:
            raise ConfigError(f"{to!r} is not in the topics of this consumer {self.topics}")
        await self._pause()
        for stale in self._take_buffered():
            self._outstanding.discard(stale)
        for pull in self._pulls:
            if isinstance(to, Position) and to.topic != pull.topic:
                continue
            # A consumer's start cannot move: recreate it (the group's other members
            # keep pulling from the same name).
            await self._unbind(pull)
            await self.topology.delete_consumer(pull.topic, pull.consumer)
            await self._create(pull, to)
            await self._bind(pull)
        self._stopping = False
        for pull in self._pulls:
            self._run(pull)

    async def _pause(self) -> None:
        self._stopping = True
        self._room.set()
        tasks = [p.task for p in self._pulls if p.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _unbind(self, pull: _Pull) -> None:
        if pull.sub is not None:
            with contextlib.suppress(Exception):
                await pull.sub.unsubscribe()
            pull.sub = None

    # -- closing ----------------------------------------------------------------------------

    async def _stop_fetching(self) -> None:
        await self._pause()

    async def _finish(self) -> None:
        for pull in self._pulls:
            await self._unbind(pull)
            if not pull.durable:
                with contextlib.suppress(Exception):
                    await self.topology.delete_consumer(pull.topic, pull.consumer)
        with contextlib.suppress(Exception):  # acks are on the wire before we return
            await self.nc.flush(timeout=max(1, int(self.options.publish_timeout)))

    def __repr__(self) -> str:
        return f"<JetStreamConsumer topics={self.topics} group={self.group}>"


async def _skip(msg: Msg) -> None:
    """Acknowledge a message this consumer does not hand out (if the ack is lost, the message
    comes back after ack_wait and is skipped again)."""
    with contextlib.suppress(Exception):
        await msg.ack()


def _sequence_and_count(msg: Msg) -> tuple[int, int]:
    """Stream sequence and delivery count from the ack subject, without nats-py's full
    metadata (timestamps and all): ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...``
    (9 tokens) or, with domain and account hash, the same shifted by two."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5]), int(tokens[4])
    metadata = msg.metadata
    return metadata.sequence.stream, metadata.num_delivered


def _drop_ended(pull: _Pull, deadlines: dict[str, float], now: float) -> bool:
    """Forget the requests that ended (filled, or a status), or are past their expiry:
    over even without the server's 408. True while some are still open."""
    for reply, deadline in list(deadlines.items()):
        if reply not in pull.owed or now >= deadline + _EXPIRY_GRACE:
            del deadlines[reply]
            pull.owed.pop(reply, None)
    return bool(deadlines)
