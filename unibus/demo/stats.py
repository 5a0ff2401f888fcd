"""What the demo counts while it runs, and the report it ends with."""

from __future__ import annotations

import dataclasses
from datetime import datetime

__all__ = ["DeadLetterRow", "DemoReport", "StageStats"]


@dataclasses.dataclass(slots=True)
class StageStats:
    """One consumer group's work. Orders are counted once each, so a redelivery (the broker
    is at-least-once) does not inflate the counts."""

    name: str
    group: str
    topics: tuple[str, ...]
    writes: str | None = None
    received: set[str] = dataclasses.field(default_factory=set)
    succeeded: set[str] = dataclasses.field(default_factory=set)
    dead_lettered: set[str] = dataclasses.field(default_factory=set)
    retries: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetterRow:
    topic: str
    group: str | None
    order_id: str | None
    message_id: str
    reason: str
    attempts: int
    dead_lettered_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class DemoReport:
    """How a run ended: the URL, orders placed, every stage's counts and the DLQ contents."""

    url: str
    backend: str
    orders: int
    stages: tuple[StageStats, ...]
    dead_letters: tuple[DeadLetterRow, ...]

    def counts(self) -> dict[str, int]:
        """``{stage: orders it passed on}`` plus ``placed``, ``retries`` and ``dead-lettered``."""
        out = {"placed": self.orders}
        out.update({s.name: len(s.succeeded) for s in self.stages})
        out["retries"] = sum(s.retries for s in self.stages)
        out["dead-lettered"] = sum(len(s.dead_lettered) for s in self.stages)
        return out
