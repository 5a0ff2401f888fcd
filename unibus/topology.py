"""Topology as code: what a topic needs on the broker."""

from __future__ import annotations

from typing import Any

import pydantic

from unibus.durations import parse_duration

__all__ = ["TopicSpec"]


class TopicSpec(pydantic.BaseModel):
    """A topic and what hangs off it. Backends map each field onto their broker and ignore
    none silently: a field they cannot honour raises CapabilityError at provision time.

    ``retention`` is seconds (``"7d"`` accepted) or None for the broker default.
    ``max_attempts`` configures native redrive to the DLQ where the broker has it.
    ``options`` carries backend-specific settings (e.g. Kafka ``cleanup.policy``).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = pydantic.Field(min_length=1, max_length=200)
    partitions: int = pydantic.Field(default=1, ge=1, le=10_000)
    replication: int = pydantic.Field(default=1, ge=1)
    retention: float | None = None
    groups: tuple[str, ...] = ()
    dead_letter: bool = True
    max_attempts: int | None = pydantic.Field(default=None, ge=1)
    options: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)
