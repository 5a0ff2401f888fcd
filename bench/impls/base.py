"""What every implementation under test provides."""

from __future__ import annotations

import abc
import time


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
