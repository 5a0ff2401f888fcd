"""Pulsar: pulsar-client against unibus, both with producer batching (the client's
recommendation for throughput; unibus's ``batching=true``), persistent topics, a Shared
subscription acknowledging each message."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pulsar  # type: ignore[import-untyped]

from bench.impls.base import Impl, now, paced, stamped
from bench.impls.unibus_impl import UnibusImpl

URL = "pulsar://127.0.0.1:6650"
ADMIN = "http://127.0.0.1:8080/admin/v2/persistent/public/default"
WINDOW = 1000  # sends in flight, the same as unibus's publish_many batch
QUEUE = 1000  # receiver queue, the same as unibus's prefetch


def implementations() -> list[Impl]:
    return [UnibusImpl(URL, batching=True), RawPulsar()]


class RawPulsar(Impl):
    """pulsar-client as its docs show: a batching producer, ``send_async`` with a callback
    bridged to asyncio futures and awaited per window; ``receive`` + ``acknowledge`` in a
    worker thread so the event loop never blocks."""

    name = "pulsar-client"

    async def setup(self) -> None:
        # Warnings and errors only, filtered by the client itself, as unibus configures it:
        # a Python logger would be handed every DEBUG line (two per message sent).
        self.client = await asyncio.to_thread(
            pulsar.Client, URL, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        self.producers: dict[str, Any] = {}
        self.consumers: dict[str, Any] = {}

    async def teardown(self) -> None:
        for producer in self.producers.values():
            await asyncio.to_thread(producer.close)
        for consumer in self.consumers.values():
            await asyncio.to_thread(consumer.close)
        await asyncio.to_thread(self.client.close)
        async with httpx.AsyncClient(timeout=30) as admin:
            for topic in self.producers:
                await admin.delete(f"{ADMIN}/raw-{topic}", params={"force": "true"})

    async def prepare(self, topic: str, group: str) -> None:
        name = f"persistent://public/default/raw-{topic}"
        self.consumers[topic] = await asyncio.to_thread(
            self.client.subscribe, name, group, consumer_type=pulsar.ConsumerType.Shared,
            receiver_queue_size=QUEUE)
        self.producers[topic] = await asyncio.to_thread(
            self.client.create_producer, name, batching_enabled=True,
            batching_max_publish_delay_ms=5, max_pending_messages=WINDOW * 2,
            block_if_queue_full=True)

    def sender(self, topic: str) -> Any:
        """``send(body) -> Future`` resolved from the client's callback thread."""
        producer = self.producers[topic]
        loop = asyncio.get_running_loop()

        def settle(future: asyncio.Future[None], result: Any) -> None:
            if future.done():
                return
            if result == pulsar.Result.Ok:
                future.set_result(None)
            else:
                future.set_exception(RuntimeError(f"send failed: {result}"))

        def send(body: bytes) -> asyncio.Future[None]:
            future: asyncio.Future[None] = loop.create_future()
            producer.send_async(
                body, lambda result, _id: loop.call_soon_threadsafe(settle, future, result))
            return future

        return send

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        send = self.sender(topic)
        for start in range(0, count, WINDOW):
            await asyncio.gather(*(send(payload) for _ in range(min(WINDOW, count - start))))

    async def consume(self, topic: str, count: int) -> None:
        consumer = self.consumers[topic]

        def receive_all() -> None:
            for _ in range(count):
                consumer.acknowledge(consumer.receive(timeout_millis=30_000))

        await asyncio.to_thread(receive_all)

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        consumer = self.consumers[topic]
        total = int(rate * seconds)
        samples: list[float] = []
        failed: list[BaseException] = []

        def receive_all() -> None:
            try:
                for _ in range(total):
                    message = consumer.receive(timeout_millis=60_000)
                    samples.append(now() - stamped(message.data()))
                    consumer.acknowledge(message)
            except BaseException as exc:  # reported below, after the join
                failed.append(exc)

        receiver = threading.Thread(target=receive_all, daemon=True)
        receiver.start()
        await paced(self.sender(topic), rate, total, payload)
        await asyncio.to_thread(receiver.join, 90)
        if failed:
            raise failed[0]
        return samples
