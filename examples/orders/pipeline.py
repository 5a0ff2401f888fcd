"""The order pipeline in one file, on the public unibus API.

    uv run python examples/orders/pipeline.py                     # in memory, no server
    UNIBUS_URL=sqlite:///orders.db uv run python examples/orders/pipeline.py
    UNIBUS_URL=kafka://localhost:9092 uv run python examples/orders/pipeline.py

orders.placed -> validation -> orders.validated -> payment -> orders.payment-processed ->
fulfilment -> orders.fulfilled, and a notification service reading all four topics in its own
group. An invalid order is dead-lettered at once; a payment that fails is retried with a
growing delay and dead-lettered when its 3 attempts are spent. `unibus demo` is the same
pipeline with more orders and a live display (unibus/demo/).
"""

import asyncio
import os

import unibus

PLACED, VALIDATED, PAID, FULFILLED = TOPICS = [
    "orders.placed", "orders.validated", "orders.payment-processed", "orders.fulfilled",
]
MAX_ATTEMPTS = 3

ORDERS = [
    {"id": "order-1", "quantity": 2, "card": "ok"},
    {"id": "order-2", "quantity": -1, "card": "ok"},        # invalid: dead-lettered at once
    {"id": "order-3", "quantity": 1, "card": "flaky"},      # payment fails once, then succeeds
    {"id": "order-4", "quantity": 3, "card": "declined"},   # payment never succeeds
    {"id": "order-5", "quantity": 5, "card": "ok"},
]

fulfilled: set[str] = set()
notified: list[str] = []
published: list[str] = []


async def forward(bus: unibus.Bus, topic: str, order: dict, cause: unibus.Delivery | None
                  ) -> None:
    """Publish the order's next event (key = order id, so its events stay in order)."""
    await bus.publish(topic, order, key=order["id"], type=topic.replace("orders.", "order."),
                      causation_id=cause.message.id if cause else None)
    published.append(topic)


async def validation(bus: unibus.Bus, delivery: unibus.Delivery) -> None:
    order = bus.decode(delivery)
    if order["quantity"] <= 0:
        await delivery.dead_letter(f"quantity {order['quantity']} is not positive")
        return
    await forward(bus, VALIDATED, order, delivery)
    await delivery.ack()


async def payment(bus: unibus.Bus, delivery: unibus.Delivery) -> None:
    order = bus.decode(delivery)
    card_fails = order["card"] == "declined" or (
        order["card"] == "flaky" and delivery.attempt == 1)
    if card_fails:
        # Retry later without blocking other orders; the consumer's max_attempts sends the
        # order to the dead-letter queue when the third attempt fails.
        await delivery.nack(delay=0.2 * 3 ** (delivery.attempt - 1))
        return
    await forward(bus, PAID, order, delivery)
    await delivery.ack()


async def fulfilment(bus: unibus.Bus, delivery: unibus.Delivery) -> None:
    order = bus.decode(delivery)
    await forward(bus, FULFILLED, order, delivery)
    await delivery.ack()
    fulfilled.add(order["id"])


async def notification(bus: unibus.Bus, delivery: unibus.Delivery) -> None:
    notified.append(f"{delivery.topic} {delivery.message.key}")
    await delivery.ack()


STAGES = [  # (consumer group, topics it reads, handler)
    ("validation", [PLACED], validation),
    ("payment", [VALIDATED], payment),
    ("fulfilment", [PAID], fulfilment),
    ("notifications", TOPICS, notification),
]


async def serve(bus: unibus.Bus, consumer: unibus.Consumer, handler, stop: asyncio.Event
                ) -> None:
    while not stop.is_set():
        try:
            delivery = await consumer.receive(timeout=0.25)
        except unibus.OperationTimeoutError:
            continue
        await handler(bus, delivery)


async def dead_letters(bus: unibus.Bus) -> list[unibus.DeadLetter]:
    queues = [bus.dead_letter_queue(topic, group) for group, topics, _ in STAGES[:3]
              for topic in topics]
    return [letter for dlq in queues for letter in await dlq.list()]


async def main() -> None:
    async with unibus.connect(os.environ.get("UNIBUS_URL", "memory://")) as bus:
        for topic in TOPICS:  # start from empty topics
            await bus.delete_topic(topic)
            await bus.provision(topic, max_attempts=MAX_ATTEMPTS,
                                groups=tuple(g for g, ts, _ in STAGES if topic in ts))
        consumers = [(await bus.consumer(topics, group=group, max_attempts=MAX_ATTEMPTS),
                      handler) for group, topics, handler in STAGES]
        stop = asyncio.Event()
        workers = [asyncio.create_task(serve(bus, c, h, stop)) for c, h in consumers]

        for order in ORDERS:
            await forward(bus, PLACED, order, None)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (len(fulfilled) + len(await dead_letters(bus)) < len(ORDERS)
               or len(notified) < len(published)):
            if loop.time() > deadline:
                raise TimeoutError("the pipeline did not finish within 60 s")
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*workers)
        for consumer, _ in consumers:
            await consumer.close()

        print("fulfilled:", ", ".join(sorted(fulfilled)))
        print("notifications sent:", len(notified))
        for letter in sorted(await dead_letters(bus), key=lambda d: d.message.key or ""):
            print(f"dead letter: {letter.message.key} from {letter.original_topic} after "
                  f"{letter.attempts} attempt(s): {letter.reason}")


if __name__ == "__main__":
    asyncio.run(main())
