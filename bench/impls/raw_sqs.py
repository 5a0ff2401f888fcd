"""SQS on ElasticMQ: aioboto3 against unibus, standard queues, SendMessageBatch of 10,
ReceiveMessage of 10 and DeleteMessageBatch, the same concurrency on both sides.

Two more rows explain the ratios: ``unibus-1by1`` awaits each ``ack()`` before the next (an
ack returns only once SQS deleted the message, so one task acking one by one pays a round
trip per message; acks awaited together, or from several tasks, share DeleteMessageBatch
calls), and ``aioboto3+attrs`` is the raw client sending two String attributes per
message, what the unibus envelope of a default message costs the client and the server
(``ce_id`` and ``ce_time``: SQS leaves out the attributes that hold their defaults).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aioboto3  # type: ignore[import-untyped]

from bench.impls.base import Impl, now, paced, stamped
from bench.impls.unibus_impl import UnibusImpl

ENDPOINT = "http://127.0.0.1:9324"
URL = f"sqs://us-east-1?endpoint_url={ENDPOINT}"
SENDERS = 16  # SendMessageBatch calls in flight
WINDOW = 1000  # messages per publish window, the same as unibus's publish_many batch
RECEIVERS = 4  # ReceiveMessage calls in flight, unibus's receive_concurrency


def implementations() -> list[Impl]:
    return [UnibusImpl(URL, concurrent_acks=True, receive_concurrency=RECEIVERS, wait_time=1),
            RawAioboto3(), RawWithAttributes(),
            UnibusOneByOne(URL, receive_concurrency=RECEIVERS, wait_time=1)]


class UnibusOneByOne(UnibusImpl):
    name = "unibus-1by1"


class RawAioboto3(Impl):
    """aioboto3 as the SQS docs recommend for throughput: batches of 10 sent concurrently;
    long-polling receivers of 10, each batch deleted with one DeleteMessageBatch."""

    name = "aioboto3"
    attributes = 0
    receive_args: dict[str, Any] = {}

    async def setup(self) -> None:
        session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                   region_name="us-east-1")
        self.context = session.client("sqs", endpoint_url=ENDPOINT)
        self.sqs = await self.context.__aenter__()
        self.urls: dict[str, str] = {}

    async def teardown(self) -> None:
        for url in self.urls.values():
            await self.sqs.delete_queue(QueueUrl=url)
        await self.context.__aexit__(None, None, None)

    async def prepare(self, topic: str, group: str) -> None:
        reply = await self.sqs.create_queue(QueueName=f"raw-{topic}-{group}")
        self.urls[topic] = reply["QueueUrl"]

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        url = self.urls[topic]
        body = payload.decode()
        gate = asyncio.Semaphore(SENDERS)
        extra: dict[str, Any] = {"MessageAttributes": {
            f"attr_{n}": {"DataType": "String", "StringValue": str(uuid.uuid4())}
            for n in range(self.attributes)}} if self.attributes else {}

        async def send(first: int, end: int) -> None:
            async with gate:
                entries = [{"Id": str(n), "MessageBody": body, **extra}
                           for n in range(min(10, end - first))]
                reply = await self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
                if reply.get("Failed"):
                    raise RuntimeError(f"send failed: {reply['Failed'][:1]}")

        # Windows of WINDOW messages, as every implementation publishes (unibus's bench loop
        # awaits one publish_many of 1,000 at a time); 16 SendMessageBatch calls in flight.
        for start in range(0, count, WINDOW):
            end = min(start + WINDOW, count)
            await asyncio.gather(*(send(i, end) for i in range(start, end, 10)))

    async def receive(self, url: str, enough: Any, each: Any = None) -> None:
        while not enough():
            reply = await self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                   WaitTimeSeconds=1, **self.receive_args)
            messages = reply.get("Messages", [])
            if messages:
                if each is not None:
                    for message in messages:
                        each(message)
                await self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)])
                self.got += len(messages)

    async def consume(self, topic: str, count: int) -> None:
        self.got = 0
        url = self.urls[topic]
        await asyncio.gather(*(self.receive(url, lambda: self.got >= count)
                               for _ in range(RECEIVERS)))

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        self.got = 0
        url = self.urls[topic]
        total = int(rate * seconds)
        samples: list[float] = []

        def sample(message: dict[str, Any]) -> None:
            samples.append(now() - float(message["Body"].split("|", 1)[0]))

        receivers = asyncio.gather(*(self.receive(url, lambda: self.got >= total, sample)
                                     for _ in range(RECEIVERS)))

        async def send(body: bytes) -> None:
            # SQS bodies are text: the send time goes in as digits, padded to the same size
            text = f"{stamped(body)!r}|".ljust(len(body), "x")
            await self.sqs.send_message(QueueUrl=url, MessageBody=text)

        await paced(send, rate, total, payload)
        await asyncio.wait_for(receivers, 60)
        return samples


class RawWithAttributes(RawAioboto3):
    """The same, with two 36-character String attributes per message (what the unibus
    envelope sends for a message with the default type and source: id and time), received
    with their attributes."""

    name = "aioboto3+attrs"
    attributes = 2
    receive_args: dict[str, Any] = {"MessageAttributeNames": ["All"]}
