"""What every implementation under test provides."""

from __future__ import annotations

import abc
import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Impl(abc.ABC):
    """One way of talking to one broker. Each method runs one measured operation."""

    name: str

    async def setup(self) -> None:  # noqa: B027  (optional hook)
        """Connect; not measured."""

    async def teardown(self) -> None:  # noqa: B027
        """Disconnect; not measured."""

    @abc.abstractmethod
    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        """Publish ``count`` messages and return when the broker acknowledged all of them."""

    @abc.abstractmethod
    async def consume(self, topic: str, count: int) -> None:
        """Consume ``count`` messages already on ``topic``, acknowledging each."""

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        """End-to-end latency in seconds per message at a fixed publish rate."""
        raise NotImplementedError


def now() -> float:
    return time.perf_counter()


def stamp(payload: bytes) -> bytes:
    """The payload with its first 8 bytes replaced by the send time."""
    return struct.pack(">d", now()) + payload[8:]


def stamped(body: bytes) -> float:
    """The send time written by :func:`stamp`."""
    return float(struct.unpack(">d", body[:8])[0])


async def paced(send: Callable[[bytes], Awaitable[Any]], rate: int, total: int,
                payload: bytes) -> None:
    """Send ``total`` stamped messages at ``rate`` per second, each in its own task so that
    a slow acknowledgement does not hold back the schedule; return when all are acked."""
    tasks: set[asyncio.Future[Any]] = set()
    start = now()
    for i in range(total):
        delay = start + i / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(send(stamp(payload)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
