"""Retry policy: how many attempts, how long between them, which errors are worth retrying.

One budget: the attempt number is the broker's delivery count (``Delivery.attempt``), so a
broker redelivery and a unibus retry are the same attempt, never stacked. Waits are handed to
the broker through ``nack(delay=...)``, so a waiting retry blocks nothing.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Literal

from unibus.durations import parse_duration
from unibus.errors import ConfigError, SerializationError

__all__ = [
    "ExponentialBackoff",
    "FixedBackoff",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
]


class PermanentError(Exception):
    """Raise from a handler when retrying cannot help: the message goes to the DLQ now."""


class TransientError(Exception):
    """Raise from a handler to ask for a retry even if the error type is listed permanent."""


@dataclasses.dataclass(frozen=True, slots=True)
class FixedBackoff:
    """Waits from a list (``1s, 10s, 60s``); the last one repeats."""

    delays: tuple[float, ...] = (1.0, 10.0, 60.0)

    @classmethod
    def of(cls, *delays: str | float) -> FixedBackoff:
        if not delays:
            raise ConfigError("a fixed backoff needs at least one delay")
        return cls(tuple(parse_duration(d) for d in delays))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        return self.delays[min(attempt, len(self.delays)) - 1]


@dataclasses.dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * factor**(attempt-1)``, capped, with full jitter when ``jitter`` is set."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * self.factor ** max(attempt - 1, 0))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling


Backoff = FixedBackoff | ExponentialBackoff

#: Errors that retrying will not fix, by default: bad data and programming errors.
DEFAULT_PERMANENT: tuple[type[BaseException], ...] = (
    PermanentError, SerializationError, ValueError, TypeError, KeyError, AttributeError,
    LookupError, NotImplementedError,
)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` deliveries in all (the first included), waiting ``backoff`` between.

    An error is permanent when it is an instance of one of ``permanent`` (and not of
    ``TransientError``); permanent errors skip the remaining attempts.
    """

    max_attempts: int = 3
    backoff: Backoff = FixedBackoff()
    permanent: tuple[type[BaseException], ...] = DEFAULT_PERMANENT

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")

    @classmethod
    def fixed(cls, *delays: str | float, max_attempts: int | None = None,
              permanent: Sequence[type[BaseException]] = DEFAULT_PERMANENT) -> RetryPolicy:
        backoff = FixedBackoff.of(*delays)
        return cls(max_attempts or len(backoff.delays) + 1, backoff, tuple(permanent))

    def classify(self, error: BaseException) -> Literal["transient", "permanent"]:
        if isinstance(error, TransientError):
            return "transient"
        return "permanent" if isinstance(error, self.permanent) else "transient"

    def next_step(
        self, error: BaseException, attempt: int
    ) -> tuple[Literal["retry", "dead_letter"], float]:
        """What to do after ``attempt`` failed with ``error``: retry after a delay, or DLQ."""
        if self.classify(error) == "permanent" or attempt >= self.max_attempts:
            return "dead_letter", 0.0
        return "retry", self.backoff.delay(attempt)
