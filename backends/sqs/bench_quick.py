"""A first throughput reading: unibus-sqs against aioboto3 used directly, same server, one run.

    uv run python backends/sqs/bench_quick.py [--count 100000] [--endpoint http://127.0.0.1:9324]

Publishes COUNT x 200-byte messages, then consumes and acknowledges them all, through unibus
and through the raw client the way the SQS docs recommend (SendMessageBatch of 10,
ReceiveMessage of 10 with long polling, DeleteMessageBatch): once with bare bodies, once with
five String attributes per message (what the unibus envelope costs the server). A warm-up
round runs first so the server's JIT does not favour whichever side runs last. Prints
messages/s for each.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aioboto3  # type: ignore[import-untyped]

import unibus

BODY = b"x" * 200
CONCURRENCY = 16  # batch requests in flight, the same for both sides


async def bench_unibus(endpoint: str, count: int, receivers: int) -> tuple[float, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    url = f"sqs://us-east-1?endpoint_url={endpoint}"
    async with unibus.connect(url, receive_concurrency=receivers) as bus:
        consumer = await bus.consumer(topic, group="bench", prefetch=1000)
        messages = [unibus.Message(body=BODY) for _ in range(count)]
        start = time.perf_counter()
        await bus.publish_many(topic, messages)
        published = time.perf_counter() - start
        start = time.perf_counter()
        got = 0
        while got < count:
            batch = await consumer.receive_batch(500, timeout=30)
            await asyncio.gather(*(d.ack() for d in batch))
            got += len(batch)
        consumed = time.perf_counter() - start
        await consumer.close()
        await bus.backend.delete_topic(topic)
    return count / published, count / consumed


async def bench_raw(endpoint: str, count: int, receivers: int, attributes: int = 0
                    ) -> tuple[float, float]:
    session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                               region_name="us-east-1")
    async with session.client("sqs", endpoint_url=endpoint) as sqs:
        url = (await sqs.create_queue(QueueName=f"bench-raw-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        gate = asyncio.Semaphore(CONCURRENCY)
        extra: dict[str, Any] = {"MessageAttributes": {
            f"attr_{n}": {"DataType": "String", "StringValue": str(uuid.uuid4())}
            for n in range(attributes)}} if attributes else {}

        async def send(first: int) -> None:
            async with gate:
                entries = [{"Id": str(n), "MessageBody": BODY.decode(), **extra}
                           for n in range(min(10, count - first))]
                await sqs.send_message_batch(QueueUrl=url, Entries=entries)

        start = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(0, count, 10)))
        published = time.perf_counter() - start

        got = 0

        async def receive() -> None:
            nonlocal got
            while got < count:
                reply: dict[str, Any] = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                    MessageAttributeNames=["All"])
                messages = reply.get("Messages", [])
                if messages:
                    await sqs.delete_message_batch(QueueUrl=url, Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(messages)])
                    got += len(messages)

        start = time.perf_counter()
        await asyncio.gather(*(receive() for _ in range(receivers)))
        consumed = time.perf_counter() - start
        await sqs.delete_queue(QueueUrl=url)
    return count / published, count / consumed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--endpoint", default="http://127.0.0.1:9324")
    parser.add_argument("--receivers", type=int, default=4,
                        help="concurrent ReceiveMessage calls, for both sides")
    args = parser.parse_args()
    print(f"{args.count} x {len(BODY)} B on {args.endpoint}, {args.receivers} receivers")
    await bench_raw(args.endpoint, min(args.count, 5000), args.receivers)  # warm-up
    runs: tuple[tuple[str, Callable[[], Awaitable[tuple[float, float]]]], ...] = (
        ("unibus", lambda: bench_unibus(args.endpoint, args.count, args.receivers)),
        ("raw aioboto3", lambda: bench_raw(args.endpoint, args.count, args.receivers)),
        ("raw + 5 attrs", lambda: bench_raw(args.endpoint, args.count, args.receivers, 5)),
    )
    for name, run in runs:
        pub, con = await run()
        print(f"{name:>13}: publish {pub:9,.0f} msg/s   consume+ack {con:9,.0f} msg/s",
              flush=True)

if __name__ == "__main__":
    asyncio.run(main())
