"""The handler runner behind ``bus.subscribe``: bounded concurrency, settle every delivery,
apply the retry policy, idempotency, poison detection and the circuit breaker.

A fixed pool of ``concurrency`` worker tasks pulls from one consumer, so there is no task per
message and at most ``concurrency`` handlers run at once. Every delivery is settled exactly
once: ack on success (and on a recognised duplicate), nack with the policy's delay on a
transient failure, dead-letter on a permanent one, when the budget is spent, or when the
message is poison.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from unibus import deadletter
from unibus._tasks import cancel_and_wait
from unibus.errors import ClosedError, OperationTimeoutError, SettlementError, UnibusError
from unibus.message import Message
from unibus.protocols import Consumer, Delivery
from unibus.reliability.breaker import CircuitBreaker
from unibus.reliability.idempotency import FailureRecord, IdempotencyStore
from unibus.reliability.policy import RetryPolicy

__all__ = ["DeadLetterEvent", "Subscription", "SubscriptionStats"]

log = logging.getLogger("unibus.runner")

Handler = Callable[[Any], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class SubscriptionStats:
    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    poison: int = 0
    resubscribed: int = 0  # times the subscription subscribed again after its consumer failed


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetterEvent:
    """What the alert hook receives when a message is dead-lettered."""

    topic: str
    group: str | None
    message: Message
    reason: str
    attempts: int
    error: BaseException | None


AlertHook = Callable[[DeadLetterEvent], Any]


class Subscription:
    """A running handler; stop it with :meth:`stop` (drains in-flight work).

    If its consumer fails for good (the backend gave up resuming after a broker outage, or
    the broker cancelled consumption because the queue was deleted), the subscription logs
    ``subscription_failed``, keeps the error in :attr:`error` and, given ``reopen`` (as
    ``bus.subscribe`` gives it), subscribes again with a growing pause (1 s up to 30 s)
    until that works; without ``reopen`` it stops taking messages."""

    def __init__(
        self,
        consumer: Consumer,
        handler: Handler,
        *,
        policy: RetryPolicy,
        concurrency: int = 8,
        idempotency: IdempotencyStore | None = None,
        breaker: CircuitBreaker | None = None,
        on_dead_letter: AlertHook | None = None,
        poison_threshold: int | None = None,
        decode: Callable[[Message], Any] | None = None,
        lease: float = 15.0,
        reopen: Callable[[], Awaitable[Consumer]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.policy = policy
        self.concurrency = concurrency
        self.idempotency = idempotency
        self.breaker = breaker
        self.on_dead_letter = on_dead_letter
        self.poison_threshold = poison_threshold
        self.decode = decode
        self.lease = lease
        self.stats = SubscriptionStats()
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._reopen = reopen
        self._reopening: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # cleared while the subscription subscribes again
        self._ready.set()
        self._reported: Consumer | None = None  # the consumer whose failure was logged
        #: The last error its consumer failed with (None if it never failed).
        self.error: UnibusError | None = None

    def start(self) -> Subscription:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self.concurrency)]
        return self

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop taking messages, let running handlers finish, close the consumer."""
        self._stopping = True
        if self._reopening is not None:
            await cancel_and_wait([self._reopening], "stopping the subscription's resubscribe")
        self._ready.set()
        await self.consumer.close(drain_timeout=drain_timeout)
        await cancel_and_wait(self._workers, "stopping the subscription's handlers")
        self._workers = []

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- workers ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while not self._stopping:
            if self.breaker is not None:
                await self.breaker.acquire()
            consumer = self.consumer
            try:
                delivery = await consumer.receive(timeout=1.0)
            except OperationTimeoutError:
                if self.breaker is not None:
                    self.breaker.give_back()
                continue
            except ClosedError:
                return
            except SettlementError as error:
                # Dead-lettering a message that arrived over its attempts failed (the broker
                # is away?): it stays with the broker and comes back; this worker goes on.
                if self.breaker is not None:
                    self.breaker.give_back()
                log.warning("receive_settlement_failed topics=%s group=%s: %s",
                            ",".join(consumer.topics), consumer.group, error)
                await asyncio.sleep(1.0)  # retry pacing while the broker is away
                continue
            except UnibusError as error:
                if self.breaker is not None:
                    self.breaker.give_back()
                if not await self._consumer_failed(consumer, error):
                    return
                continue
            try:
                await self._process(delivery)
            except Exception:
                # The store or the broker failed around the handler: the message goes back
                # for redelivery, and this worker keeps going.
                log.exception("handler_runner_error topic=%s id=%s", delivery.topic,
                              delivery.message.id)
                if not delivery.settled:
                    await self._settle(delivery.nack(delay=1.0))

    async def _consumer_failed(self, consumer: Consumer, error: UnibusError) -> bool:
        """``consumer`` failed for good: report it once (every worker sees it) and subscribe
        again if the subscription can; whether this worker goes on."""
        if consumer is self.consumer and consumer is not self._reported:
            self._reported, self.error = consumer, error
            log.error("subscription_failed topics=%s group=%s error=%s: %s%s",
                      ",".join(consumer.topics), consumer.group, type(error).__name__, error,
                      "; subscribing again" if self._reopen is not None else "")
            if self._reopen is not None:
                self._ready.clear()
                self._reopening = asyncio.get_running_loop().create_task(
                    self._resubscribe(consumer, self._reopen))
        await self._ready.wait()
        return self._reopen is not None and not self._stopping

    async def _resubscribe(self, failed: Consumer,
                           reopen: Callable[[], Awaitable[Consumer]]) -> None:
        try:
            with contextlib.suppress(UnibusError):
                # What it still holds goes back to the broker; handlers running on its
                # deliveries settle what they can in the meantime.
                await failed.close(drain_timeout=5.0)
            pause = 1.0
            while not self._stopping:
                await asyncio.sleep(pause)  # resubscribe pacing
                try:
                    consumer = await reopen()
                except ClosedError:
                    self._reopen = None  # the bus is closed: nothing to subscribe with
                    return
                except UnibusError as error:
                    pause = min(pause * 2, 30.0)
                    log.warning("subscription_resubscribe_failed topics=%s group=%s error=%s: "
                                "%s; trying again in %gs", ",".join(failed.topics),
                                failed.group, type(error).__name__, error, pause)
                    continue
                self.consumer = consumer
                self.stats.resubscribed += 1
                log.warning("subscription_resubscribed topics=%s group=%s",
                            ",".join(failed.topics), failed.group)
                return
        finally:
            self._ready.set()

    async def _process(self, delivery: Delivery) -> None:
        message = delivery.message
        key = f"{delivery.group or ''}:{message.id}"
        store = self.idempotency
        if store is not None:
            claim = await self._claim(store, key)
            if claim == "done":
                self.stats.duplicates += 1
                await self._settle(delivery.ack())
                return
        try:
            argument = self.decode(message) if self.decode is not None else message
            await self.handler(argument)
        except Exception as error:
            await self._failed(delivery, key, error)
            return
        if store is not None:
            await store.complete(key)
        self.stats.processed += 1
        if self.breaker is not None:
            await self.breaker.record_success()
        await self._settle(delivery.ack())

    async def _claim(self, store: IdempotencyStore, key: str) -> str:
        """Claim ``key``; a live claim of another worker (a concurrent duplicate, or a worker
        that died mid-handler) is waited out here rather than nacked, so it never costs the
        message one of its attempts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease + 1.0
        while True:
            claim = await store.claim(key, self.lease)
            if claim != "busy" or loop.time() > deadline:
                return claim
            await asyncio.sleep(0.5)  # the other claim expires after at most `lease`

    async def _failed(self, delivery: Delivery, key: str, error: Exception) -> None:
        self.stats.failed += 1
        record: FailureRecord | None = None
        if self.idempotency is not None:
            await self.idempotency.release(key)
            record = await self.idempotency.record_failure(key)
        action, delay = self.policy.next_step(error, delivery.attempt)
        reason = f"{type(error).__name__}: {error}"
        if (self.poison_threshold is not None and record is not None
                and record.count >= self.poison_threshold):
            self.stats.poison += 1
            action, reason = "dead_letter", f"poison message: failed {record.count} times; {reason}"
        elif action == "dead_letter" and self.policy.classify(error) == "transient":
            reason = f"gave up after {delivery.attempt} attempts; {reason}"
        if self.breaker is not None and self.policy.classify(error) == "transient":
            await self.breaker.record_failure()
        if action == "retry":
            self.stats.retried += 1
            await self._settle(delivery.nack(delay=delay))
            return
        await self._dead_letter(delivery, reason, error, record)

    async def _dead_letter(self, delivery: Delivery, reason: str, error: BaseException,
                           record: FailureRecord | None) -> None:
        now = datetime.now(UTC).isoformat()
        first = (datetime.fromtimestamp(record.first, UTC).isoformat()
                 if record is not None else delivery.message.headers.get(
                     deadletter.FIRST_FAILURE, now))
        summary = "".join(traceback.format_exception(error, limit=-3)[-4:])[-900:]
        context = {
            deadletter.ERROR_TYPE: f"{type(error).__module__}.{type(error).__qualname__}",
            deadletter.TRACEBACK: summary,
            deadletter.FIRST_FAILURE: first,
            deadletter.LAST_FAILURE: now,
        }
        # The backend builds the dead letter from delivery.message: give it the context.
        delivery.message = delivery.message.with_headers(**context)
        self.stats.dead_lettered += 1
        log.error("dlq_send topic=%s id=%s attempts=%d reason=%s", delivery.topic,
                  delivery.message.id, delivery.attempt, reason)
        await self._settle(delivery.dead_letter(reason))
        if self.on_dead_letter is not None:
            event = DeadLetterEvent(delivery.topic, delivery.group, delivery.message, reason,
                                    delivery.attempt, error)
            try:
                result = self.on_dead_letter(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("dead-letter alert hook failed")

    async def _settle(self, settling: Awaitable[None]) -> None:
        # A settlement that fails leaves the message with the broker: it comes back.
        with contextlib.suppress(UnibusError):
            await settling
