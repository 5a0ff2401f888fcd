"""A circuit breaker that pauses consumption while a dependency is failing.

closed -> (``failure_threshold`` consecutive failures) -> open -> (``reset_timeout``) ->
half-open: up to ``half_open_probes`` deliveries are tried; one success closes the circuit,
one failure opens it again. While open, the runner stops taking messages, so nothing burns
its retries against a dependency that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time

__all__ = ["BreakerState", "CircuitBreaker"]

log = logging.getLogger("unibus.breaker")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Owned by one handler; safe for the handler's concurrent workers (one event loop)."""

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 30.0,
                 half_open_probes: int = 1, name: str = "handler") -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_probes = half_open_probes
        self.name = name
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self._changed = asyncio.Condition()
        self.transitions: list[BreakerState] = []

    async def acquire(self) -> None:
        """Wait until a delivery may be processed (closed, or a half-open probe slot)."""
        async with self._changed:
            while True:
                if self.state is BreakerState.CLOSED:
                    return
                if self.state is BreakerState.OPEN:
                    remaining = self._opened_at + self.reset_timeout - time.monotonic()
                    if remaining <= 0:
                        self._move(BreakerState.HALF_OPEN)
                        continue
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns when a
                    # cancellation arrives as the wait ends, and a runner's worker that missed
                    # its cancellation could then wait here for a probe slot forever.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await self._changed.wait()
                    continue
                if self._probes < self.half_open_probes:
                    self._probes += 1
                    return
                await self._changed.wait()

    def give_back(self) -> None:
        """Return a half-open probe slot that was not used (nothing arrived to try)."""
        if self.state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    async def record_success(self) -> None:
        async with self._changed:
            self._failures = 0
            if self.state is not BreakerState.CLOSED:
                self._move(BreakerState.CLOSED)

    async def record_failure(self) -> None:
        async with self._changed:
            self._failures += 1
            if self.state is BreakerState.HALF_OPEN or (
                self.state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._opened_at = time.monotonic()
                self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        log.warning("circuit_breaker name=%s from=%s to=%s failures=%d",
                    self.name, self.state.value, state.value, self._failures)
        self.state = state
        self._probes = 0
        self.transitions.append(state)
        self._changed.notify_all()
