"""A first throughput reading: unibus-kafka against aiokafka used as its docs show.

Publishes N x 200-byte messages (acks=all, idempotent, lz4, pipelined), then consumes them
in a consumer group committing after processing, through unibus and through aiokafka
directly, on the same broker in the same run.
Usage: ``uv run python backends/kafka/bench_quick.py [N]`` (default 100000).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

import unibus

URL = os.environ.get("KAFKA_TEST_URL", "kafka://127.0.0.1:9092")
BOOTSTRAP = URL.split("://", 1)[1]
BODY = b"x" * 200
WINDOW = 5000  # publishes in flight
PRODUCER = {"acks": "all", "enable_idempotence": True, "compression_type": "lz4",
            "linger_ms": 5, "max_batch_size": 65536}


async def bench_unibus(count: int) -> tuple[float, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    async with unibus.connect(URL) as bus:
        consumer = await bus.consumer(topic, group=f"{topic}-g", prefetch=2000,
                                      start="earliest")
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
        await consumer.close()  # final commit included
        consumed = time.perf_counter() - start
        await bus.delete_topic(topic)
    return count / published, count / consumed


async def bench_raw(count: int) -> tuple[float, float]:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    async with unibus.connect(URL) as bus:
        await bus.provision(topic)  # same topic settings as unibus creates
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **PRODUCER)
    await producer.start()
    try:
        start = time.perf_counter()
        for i in range(0, count, WINDOW):
            futures = [await producer.send(topic, BODY, key=f"k{n % 64}".encode())
                       for n in range(i, min(i + WINDOW, count))]
            await asyncio.gather(*futures)
        published = time.perf_counter() - start
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"{topic}-g",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=2000)
    await consumer.start()
    try:
        start = time.perf_counter()
        received = 0
        while received < count:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                received += len(records)  # "process" each record
            if batch:
                await consumer.commit()  # commit after processing, per batch
        consumed = time.perf_counter() - start
    finally:
        await consumer.stop()
    async with unibus.connect(URL) as bus:
        await bus.delete_topic(topic)
    return count / published, count / consumed


async def main(count: int) -> None:
    raw_pub, raw_con = await bench_raw(count)
    uni_pub, uni_con = await bench_unibus(count)
    print(f"{count} x {len(BODY)} B on Kafka at {BOOTSTRAP} (1 partition, acks=all, lz4)")
    print(f"{'':10} {'publish msg/s':>14} {'consume+ack msg/s':>18}")
    print(f"{'aiokafka':10} {raw_pub:14,.0f} {raw_con:18,.0f}")
    print(f"{'unibus':10} {uni_pub:14,.0f} {uni_con:18,.0f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
