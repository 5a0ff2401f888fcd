"""Polling helpers for the embedded engine tests (no sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import unibus

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], what: str, timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # polling interval


async def take(consumer: unibus.Consumer, count: int, *, ack: bool = True,
               timeout: float = 20.0) -> list[unibus.Delivery]:
    """Receive ``count`` deliveries (acknowledging each unless told not to)."""
    deadline = time.monotonic() + timeout
    got: list[unibus.Delivery] = []
    while len(got) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"received {len(got)} of {count}"
        delivery = await consumer.receive(timeout=remaining)
        if ack:
            await delivery.ack()
        got.append(delivery)
    return got


async def quiet(consumer: unibus.Consumer, period: float = 0.5) -> None:
    """Nothing arrives within ``period``."""
    try:
        extra = await consumer.receive(timeout=period)
    except unibus.OperationTimeoutError:
        return
    raise AssertionError(f"unexpected delivery {extra!r}")
