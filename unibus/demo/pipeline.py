"""The order pipeline of the reference scenario, on the public API only.

``orders.placed`` (key = order id) -> validation -> ``orders.validated`` -> payment ->
``orders.payment-processed`` -> fulfilment -> ``orders.fulfilled``; a notification service
reads all four topics in its own group. Each stage is a consumer group. An invalid order is
dead-lettered at once; a payment that fails is retried with a growing ``nack(delay)`` and goes
to the dead-letter queue when the consumer's ``max_attempts`` budget (3) is spent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence

from unibus.bus import Bus
from unibus.demo.orders import InvalidOrder, IssuerUnavailable, Order, charge, validate
from unibus.demo.stats import DeadLetterRow, DemoReport, StageStats
from unibus.errors import OperationTimeoutError
from unibus.protocols import Consumer, DeadLetterQueue, Delivery
from unibus.reliability import ExponentialBackoff
from unibus.topology import TopicSpec

__all__ = ["MAX_ATTEMPTS", "TOPICS", "Pipeline"]

PLACED, VALIDATED, PAID, FULFILLED = TOPICS = (
    "orders.placed", "orders.validated", "orders.payment-processed", "orders.fulfilled",
)
MAX_ATTEMPTS = 3
#: Waits between payment attempts: 0.2 s, then 0.6 s.
BACKOFF = ExponentialBackoff(base=0.2, factor=3.0, jitter=False)

_IDS = uuid.UUID("6f1d3c52-4a4e-4c1b-9a59-3b0f3a8f9e10")

Observer = Callable[["Pipeline"], None]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real failure in a task group's errors (a stage's, or the producer's)."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def _message_id(order_id: str, topic: str) -> str:
    """The same order reaching the same topic twice gets the same id (dedup downstream)."""
    return str(uuid.uuid5(_IDS, f"{order_id}/{topic}"))


class Pipeline:
    """One run of the pipeline on an open bus. ``observer`` is called after every change."""

    def __init__(self, bus: Bus, orders: Sequence[Order], observer: Observer | None = None):
        self.bus = bus
        self.orders = list(orders)
        self.observer = observer
        self.validation = StageStats("validated", "validation", (PLACED,), VALIDATED)
        self.payment = StageStats("payment-processed", "payment", (VALIDATED,), PAID)
        self.fulfilment = StageStats("fulfilled", "fulfilment", (PAID,), FULFILLED)
        self.notification = StageStats("notified", "notifications", TOPICS)
        self.stages = (self.validation, self.payment, self.fulfilment, self.notification)
        self.published = 0
        self._finished = asyncio.Event()
        self._stop = asyncio.Event()

    # -- topology -----------------------------------------------------------------------

    async def provision(self) -> None:
        """Start from empty topics, each with its groups and a DLQ, and empty DLQs."""
        for topic in TOPICS:
            await self.bus.delete_topic(topic)
        for topic in TOPICS:
            groups = tuple(s.group for s in self.stages if topic in s.topics)
            await self.bus.provision(TopicSpec(
                name=topic, groups=groups, dead_letter=True, max_attempts=MAX_ATTEMPTS,
            ))
        for queue in self._dead_letter_queues():
            await queue.purge()  # where dead letters outlive their topic

    # -- the run ------------------------------------------------------------------------

    async def run(self, timeout: float = 120.0) -> DemoReport:
        """Provision, subscribe every stage, place the orders, and wait until each order is
        fulfilled or dead-lettered and every notification is sent."""
        await self.provision()
        handlers: list[tuple[StageStats, Callable[[Delivery], Awaitable[None]]]] = [
            (self.validation, self._validate), (self.payment, self._pay),
            (self.fulfilment, self._fulfil), (self.notification, self._notify),
        ]
        consumers = [
            (await self.bus.consumer(s.topics, group=s.group, max_attempts=MAX_ATTEMPTS), h)
            for s, h in handlers
        ]
        deadline = asyncio.timeout(timeout)
        try:
            async with asyncio.TaskGroup() as tasks:
                for consumer, handler in consumers:
                    tasks.create_task(self._serve(consumer, handler))
                tasks.create_task(self._place_orders())
                try:
                    async with deadline:
                        await self._finished.wait()
                finally:
                    self._stop.set()
        except BaseExceptionGroup as group:
            if deadline.expired():
                raise OperationTimeoutError(
                    f"the demo did not finish within {timeout:g}s ({self.progress_line()}); "
                    "check that the broker is up, or allow more time (--timeout)"
                ) from None
            raise _first_error(group) from None
        finally:
            for consumer, _ in consumers:
                await consumer.close(drain_timeout=5.0)
        return DemoReport(
            url=self.bus.backend.url, backend=self.bus.backend.name, orders=len(self.orders),
            stages=self.stages, dead_letters=tuple(await self._dead_letters(timeout=10.0)),
        )

    def progress_line(self) -> str:
        parts = [f"placed {self.published}/{len(self.orders)}"]
        parts += [f"{s.name} {len(s.succeeded)}" for s in self.stages]
        parts.append(f"dead-lettered {sum(len(s.dead_lettered) for s in self.stages)}")
        return ", ".join(parts)

    async def _place_orders(self) -> None:
        for order in self.orders:
            await self.bus.publish(
                PLACED, order, key=order.id, id=_message_id(order.id, PLACED),
                type="order.placed", subject=order.id,
            )
            self.published += 1
            self._changed()

    async def _serve(self, consumer: Consumer, handle: Callable[[Delivery], Awaitable[None]]
                     ) -> None:
        while not self._stop.is_set():
            try:
                delivery = await consumer.receive(timeout=0.25)
            except OperationTimeoutError:
                continue
            await handle(delivery)
            self._changed()

    async def _forward(self, delivery: Delivery, order: Order, topic: str, kind: str) -> None:
        """Publish the order's next event, caused by ``delivery``, in the same conversation."""
        incoming = delivery.message
        await self.bus.publish(
            topic, order, key=order.id, id=_message_id(order.id, topic), type=kind,
            subject=order.id, correlation_id=incoming.correlation_id or incoming.id,
            causation_id=incoming.id,
        )

    # -- the stages -----------------------------------------------------------------------

    async def _validate(self, delivery: Delivery) -> None:
        order = self.bus.decode(delivery, Order)
        self.validation.received.add(order.id)
        try:
            validate(order)
        except InvalidOrder as exc:
            await delivery.dead_letter(f"invalid order: {exc}")
            self.validation.dead_lettered.add(order.id)
            return
        await self._forward(delivery, order, VALIDATED, "order.validated")
        await delivery.ack()
        self.validation.succeeded.add(order.id)

    async def _pay(self, delivery: Delivery) -> None:
        order = self.bus.decode(delivery, Order)
        self.payment.received.add(order.id)
        try:
            charge(order, delivery.attempt)
        except IssuerUnavailable as exc:
            if delivery.attempt >= MAX_ATTEMPTS:
                # The budget is spent: dead-letter with the issuer's answer as the reason
                # (a last nack would do it too, but could only say "failed 3 attempts").
                await delivery.dead_letter(f"payment failed {delivery.attempt} times: {exc}")
                self.payment.dead_lettered.add(order.id)
                return
            await delivery.nack(delay=BACKOFF.delay(delivery.attempt))
            self.payment.retries += 1
            return
        await self._forward(delivery, order, PAID, "order.payment-processed")
        await delivery.ack()
        self.payment.succeeded.add(order.id)

    async def _fulfil(self, delivery: Delivery) -> None:
        order = self.bus.decode(delivery, Order)
        self.fulfilment.received.add(order.id)
        await self._forward(delivery, order, FULFILLED, "order.fulfilled")
        await delivery.ack()
        self.fulfilment.succeeded.add(order.id)

    async def _notify(self, delivery: Delivery) -> None:
        self.notification.received.add(delivery.message.id)
        await delivery.ack()
        self.notification.succeeded.add(delivery.message.id)

    # -- completion ---------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.observer is not None:
            self.observer(self)
        done = (self.fulfilment.succeeded | self.validation.dead_lettered
                | self.payment.dead_lettered)
        events = self.published + sum(
            len(s.succeeded) for s in (self.validation, self.payment, self.fulfilment))
        if len(done) == len(self.orders) and len(self.notification.succeeded) == events:
            self._finished.set()

    def _dead_letter_queues(self) -> list[DeadLetterQueue]:
        return [self.bus.dead_letter_queue(t, s.group) for s in self.stages[:3]
                for t in s.topics]

    async def _dead_letters(self, timeout: float) -> list[DeadLetterRow]:
        """The DLQ contents, waiting (up to ``timeout``) for every dead letter to land."""
        expected = sum(len(s.dead_lettered) for s in self.stages)
        queues = self._dead_letter_queues()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rows = [
                DeadLetterRow(
                    topic=letter.original_topic, group=letter.group or dlq.group,
                    order_id=letter.message.key, message_id=letter.message.id,
                    reason=letter.reason, attempts=letter.attempts,
                    dead_lettered_at=letter.dead_lettered_at,
                )
                for dlq in queues for letter in await dlq.list(limit=1000)
            ]
            if len(rows) >= expected or loop.time() >= deadline:
                return rows
            await asyncio.sleep(0.1)
