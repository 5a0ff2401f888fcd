"""Reliability layer: retry policy, dead-lettering, poison detection, circuit breaker,
idempotent consumer. The same on every backend; see ``bus.subscribe``."""

from unibus.reliability.breaker import BreakerState, CircuitBreaker
from unibus.reliability.idempotency import FailureRecord, IdempotencyStore, MemoryStore
from unibus.reliability.policy import (
    ExponentialBackoff,
    FixedBackoff,
    PermanentError,
    RetryPolicy,
    TransientError,
)
from unibus.reliability.runner import DeadLetterEvent, Subscription, SubscriptionStats
from unibus.reliability.sqlite_store import SQLiteStore

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "DeadLetterEvent",
    "ExponentialBackoff",
    "FailureRecord",
    "FixedBackoff",
    "IdempotencyStore",
    "MemoryStore",
    "PermanentError",
    "RetryPolicy",
    "SQLiteStore",
    "Subscription",
    "SubscriptionStats",
    "TransientError",
]
