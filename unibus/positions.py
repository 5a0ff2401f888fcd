"""Replay positions."""

from __future__ import annotations

import dataclasses

__all__ = ["Position"]


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """A message's place in a replayable topic, as the backend counts it.

    ``offset`` is an int where the broker numbers messages (Kafka offset, JetStream stream
    sequence, SQLite log offset) and an opaque string otherwise (Pulsar message id).
    Seeking to a position delivers that message again and everything after it.
    """

    topic: str
    offset: int | str
    partition: int | None = None
