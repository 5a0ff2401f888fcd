"""A first throughput reading: unibus-pulsar against pulsar-client used as its docs show.

Publishes N x 200-byte messages (pipelined), then consumes them on a Shared subscription
acknowledging each, through pulsar-client's own API as its docs show (batching producer,
``send_async`` + ``flush``; ``receive`` + ``acknowledge``) and through unibus with batching
on and with its default (off: see docs/backends/pulsar.md), on the same broker in the same
run.
Usage: ``uv run python backends/pulsar/bench_quick.py [N]`` (default 100000).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import httpx
import pulsar  # type: ignore[import-untyped]

import unibus

URL = "pulsar://127.0.0.1:6650"
ADMIN = "http://127.0.0.1:8080/admin/v2/persistent/public/default"
BODY = b"x" * 200
WINDOW = 5000  # publishes in flight


async def bench_unibus(count: int, **options: object) -> tuple[float, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    async with unibus.connect(URL, **options) as bus:
        consumer = await bus.consumer(topic, group="bench", prefetch=2000)
        messages = [unibus.Message(body=BODY, key=f"k{i % 64}") for i in range(count)]
        start = time.perf_counter()
        for i in range(0, count, WINDOW):
            await bus.publish_many(topic, messages[i:i + WINDOW])
        published = time.perf_counter() - start
        start = time.perf_counter()
        received = 0
        while received < count:
            for delivery in await consumer.receive_batch(2000, timeout=30):
                await delivery.ack()
                received += 1
        await consumer.close()  # acknowledgements flushed
        consumed = time.perf_counter() - start
        await bus.delete_topic(topic)
    return count / published, count / consumed


def bench_raw(count: int) -> tuple[float, float]:
    topic = f"persistent://public/default/bench-raw-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(URL, logger=_quiet())
    try:
        consumer = client.subscribe(topic, "bench", consumer_type=pulsar.ConsumerType.Shared,
                                    receiver_queue_size=2000)
        producer = client.create_producer(topic, batching_enabled=True,
                                          batching_max_publish_delay_ms=5,
                                          max_pending_messages=WINDOW,
                                          block_if_queue_full=True)
        failures: list[object] = []

        def sent(result: object, _message_id: object) -> None:
            if result != pulsar.Result.Ok:
                failures.append(result)

        start = time.perf_counter()
        for i in range(count):
            producer.send_async(BODY, sent, partition_key=f"k{i % 64}",
                                properties={"ce_id": str(i)})
        producer.flush()
        published = time.perf_counter() - start
        assert not failures, failures[:3]
        start = time.perf_counter()
        for _ in range(count):
            consumer.acknowledge(consumer.receive(timeout_millis=30_000))
        consumer.close()
        consumed = time.perf_counter() - start
        producer.close()
    finally:
        client.close()
    httpx.delete(f"{ADMIN}/{topic.rsplit('/', 1)[1]}", params={"force": "true"}, timeout=30)
    return count / published, count / consumed


def _quiet() -> object:
    import logging

    log = logging.getLogger("bench.pulsar")
    log.setLevel(logging.WARNING)
    return log


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rows = [
        ("raw (batching)", bench_raw(count)),
        ("unibus (batching=true)", asyncio.run(bench_unibus(count, batching=True))),
        ("unibus (default, unbatched)", asyncio.run(bench_unibus(count))),
    ]
    print(f"{count} x {len(BODY)} B on {URL}")
    print(f"{'':28} {'publish msg/s':>14} {'consume+ack msg/s':>18}")
    for label, (published, consumed) in rows:
        print(f"{label:28} {published:>14,.0f} {consumed:>18,.0f}")


if __name__ == "__main__":
    main()
