"""Idempotent consumer: remember which messages were processed, by message id.

With at-least-once delivery a message can arrive twice (a redelivery after a crash, a
broker duplicate). The runner claims each message id in a store before running the handler:
``new`` runs it, ``done`` acks the duplicate without running it, ``busy`` (another worker
holds a live claim) is waited out. Claims expire after ``lease`` seconds so a crashed worker
does not block a message for long; completed ids are remembered for ``retention`` seconds.

The stores also keep a failure log per message id (count, first and last failure), which
survives redeliveries and, for the durable stores, restarts: that is how poison messages are
recognised.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal, Protocol, runtime_checkable

__all__ = ["ClaimResult", "FailureRecord", "IdempotencyStore", "MemoryStore"]

ClaimResult = Literal["new", "done", "busy"]


@dataclasses.dataclass(frozen=True, slots=True)
class FailureRecord:
    count: int
    first: float  # epoch seconds
    last: float


@runtime_checkable
class IdempotencyStore(Protocol):
    async def claim(self, key: str, lease: float) -> ClaimResult:
        """Atomically claim ``key`` for processing for ``lease`` seconds."""
        ...

    async def complete(self, key: str) -> None:
        """``key`` was processed; later claims answer ``done`` for ``retention`` seconds."""
        ...

    async def release(self, key: str) -> None:
        """Processing failed; drop the claim so a redelivery can run again."""
        ...

    async def record_failure(self, key: str) -> FailureRecord:
        """Count one more failure of ``key``; returns the record after counting."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """In-process store for tests and single-process apps (forgets on restart)."""

    def __init__(self, retention: float = 86400.0) -> None:
        self.retention = retention
        self._claims: dict[str, tuple[str, float]] = {}
        self._failures: dict[str, FailureRecord] = {}
        self._last_prune = time.monotonic()

    async def claim(self, key: str, lease: float) -> ClaimResult:
        now = time.time()
        self._prune(now)
        state = self._claims.get(key)
        if state is not None and state[1] > now:
            return "done" if state[0] == "done" else "busy"
        self._claims[key] = ("busy", now + lease)
        return "new"

    async def complete(self, key: str) -> None:
        self._claims[key] = ("done", time.time() + self.retention)
        self._failures.pop(key, None)

    async def release(self, key: str) -> None:
        state = self._claims.get(key)
        if state is not None and state[0] == "busy":
            del self._claims[key]

    async def record_failure(self, key: str) -> FailureRecord:
        now = time.time()
        old = self._failures.get(key)
        record = FailureRecord(1, now, now) if old is None else FailureRecord(
            old.count + 1, old.first, now)
        self._failures[key] = record
        return record

    async def close(self) -> None:
        return None

    def _prune(self, now: float) -> None:
        if time.monotonic() - self._last_prune < 60:
            return
        self._last_prune = time.monotonic()
        for key in [k for k, (_, until) in self._claims.items() if until <= now]:
            del self._claims[key]
