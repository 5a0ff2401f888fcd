"""The capability model: what a backend can honour, and what a configuration asks for.

Each backend declares one :class:`Capabilities` value (which may depend on its options). That
one declaration drives the refusal of configurations (:func:`shortfalls`), the contract suite,
``unibus capabilities`` and the generated table in ``docs/capabilities.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic

from unibus.durations import format_duration, parse_duration

__all__ = [
    "Capabilities",
    "DeliveryGuarantee",
    "Ordering",
    "Requirements",
    "RetentionModel",
    "Shortfall",
    "shortfalls",
]


class DeliveryGuarantee(enum.StrEnum):
    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


class Ordering(enum.StrEnum):
    """Scope of ordering, weakest first: none, per key/partition, whole topic."""

    NONE = "none"
    PARTITION = "partition"
    STRICT = "strict"

    @property
    def rank(self) -> int:
        return list(Ordering).index(self)


class RetentionModel(enum.StrEnum):
    UNTIL_ACK = "until_ack"  # deleted once every group acknowledged it
    TIME = "time"  # kept for a configured time, acknowledged or not
    INFINITE = "infinite"  # kept until deleted explicitly


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend, as configured, can honour. ``reasons`` explains each limitation.

    ``max_delay`` is the longest publish-time delay in seconds (``None``: no delayed
    delivery; ``inf``: unlimited). ``dedup_window`` is how long the broker remembers message
    ids for idempotent publish (``inf``: forever, ``None``: no deduplication).
    """

    delivery: frozenset[DeliveryGuarantee]
    ordering: Ordering
    replay: bool
    consumer_groups: bool
    fan_out: bool
    native_dead_letter: bool
    max_delay: float | None
    ttl: bool
    priority: bool
    transactions: bool
    dedup_window: float | None
    max_message_size: int
    retention: frozenset[RetentionModel]
    wildcard_subscriptions: bool
    batch_publish: bool
    reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def deduplication(self) -> bool:
        return self.dedup_window is not None

    def reason(self, dimension: str) -> str:
        """Why ``dimension`` is missing or limited on this backend."""
        return self.reasons.get(dimension, "the backend does not declare it")

    def rows(self) -> Iterator[tuple[str, str]]:
        """(dimension, human value) pairs in a stable order, for tables."""
        yield "delivery", ", ".join(g.value for g in DeliveryGuarantee if g in self.delivery)
        yield "ordering", self.ordering.value
        yield "replay", _yes(self.replay)
        yield "consumer groups", _yes(self.consumer_groups)
        yield "fan-out", _yes(self.fan_out)
        yield "dead-letter", "native" if self.native_dead_letter else "emulated"
        yield "delayed delivery", (
            "no" if self.max_delay is None
            else "unlimited" if math.isinf(self.max_delay)
            else f"up to {format_duration(self.max_delay)}"
        )
        yield "per-message TTL", _yes(self.ttl)
        yield "priority", _yes(self.priority)
        yield "transactions", _yes(self.transactions)
        yield "deduplication", (
            "no" if self.dedup_window is None
            else f"window {format_duration(self.dedup_window)}"
        )
        yield "max message size", _size(self.max_message_size)
        yield "retention", ", ".join(
            m.value for m in RetentionModel if m in self.retention) or "none (not stored)"
        yield "wildcards", _yes(self.wildcard_subscriptions)
        yield "batch publish", _yes(self.batch_publish)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _size(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


class Requirements(pydantic.BaseModel):
    """What an application needs from its broker, in the words users already speak.

    Unset fields ask for nothing. ``retention`` is ``until_ack``, ``infinite`` or a duration
    such as ``7d``; ``delayed_delivery`` is the longest delay needed (``15m``).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    delivery: DeliveryGuarantee | None = None
    ordering: Ordering | None = None
    replay: bool = False
    retention: str | None = None
    consumer_groups: bool = False
    fan_out: bool = False
    delayed_delivery: float | None = None
    ttl: bool = False
    priority: bool = False
    transactions: bool = False
    deduplication: bool = False
    max_message_size: int | None = pydantic.Field(default=None, gt=0)
    wildcard_subscriptions: bool = False

    @pydantic.field_validator("delayed_delivery", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @pydantic.field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        if value is None or value in ("until_ack", "infinite"):
            return value
        return format_duration(parse_duration(value))


@dataclasses.dataclass(frozen=True, slots=True)
class Shortfall:
    """One requirement a backend cannot honour: what was asked, and why not."""

    requirement: str
    reason: str

    def __str__(self) -> str:
        return f"{self.requirement} ({self.reason})"


def shortfalls(requirements: Requirements, caps: Capabilities) -> list[Shortfall]:
    """Every requirement ``caps`` cannot honour; empty when all are met."""
    out: list[Shortfall] = []

    def refuse(asked: str, dimension: str) -> None:
        out.append(Shortfall(asked, caps.reason(dimension)))

    r = requirements
    if r.delivery is not None and r.delivery not in caps.delivery:
        refuse(f"delivery={r.delivery.value}", "delivery")
    if r.ordering is not None and r.ordering.rank > caps.ordering.rank:
        refuse(f"ordering={r.ordering.value}", "ordering")
    for flag in ("replay", "consumer_groups", "fan_out", "ttl", "priority", "transactions",
                 "wildcard_subscriptions"):
        if getattr(r, flag) and not getattr(caps, flag):
            refuse(f"{flag}=true", flag)
    if r.deduplication and caps.dedup_window is None:
        refuse("deduplication=true", "deduplication")
    if r.delayed_delivery is not None and (
        caps.max_delay is None or r.delayed_delivery > caps.max_delay
    ):
        refuse(f"delayed_delivery={format_duration(r.delayed_delivery)}", "delayed_delivery")
    if r.max_message_size is not None and r.max_message_size > caps.max_message_size:
        refuse(f"max_message_size={r.max_message_size}", "max_message_size")
    if r.retention is not None and not _retention_ok(r.retention, caps.retention):
        refuse(f"retention={r.retention}", "retention")
    return out


def _retention_ok(asked: str, offered: frozenset[RetentionModel]) -> bool:
    if asked == "until_ack":
        return RetentionModel.UNTIL_ACK in offered
    if asked == "infinite":
        return RetentionModel.INFINITE in offered
    return bool(offered & {RetentionModel.TIME, RetentionModel.INFINITE})


def unlimited() -> float:
    """The value of ``max_delay`` / ``dedup_window`` meaning 'no limit'."""
    return math.inf
