"""Dead letters and the failure context they carry in headers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from unibus.message import Message

__all__ = [
    "ATTEMPTS",
    "DEAD_LETTERED_AT",
    "ERROR_TYPE",
    "FIRST_FAILURE",
    "LAST_FAILURE",
    "ORIGINAL_GROUP",
    "ORIGINAL_KEY",
    "ORIGINAL_TOPIC",
    "REASON",
    "REPLAY_COUNT",
    "TRACEBACK",
    "DeadLetter",
    "failure_headers",
]

ORIGINAL_TOPIC = "unibus-original-topic"
ORIGINAL_GROUP = "unibus-original-group"
ORIGINAL_KEY = "unibus-original-key"
REASON = "unibus-dlq-reason"
ATTEMPTS = "unibus-attempts"
ERROR_TYPE = "unibus-error-type"
TRACEBACK = "unibus-traceback"
FIRST_FAILURE = "unibus-first-failure"
LAST_FAILURE = "unibus-last-failure"
DEAD_LETTERED_AT = "unibus-dead-lettered-at"
REPLAY_COUNT = "unibus-replay-count"

_MAX_HEADER = 1024


def failure_headers(
    message: Message, *, topic: str, group: str | None, reason: str, attempts: int
) -> dict[str, str]:
    """The headers a message gains when it is dead-lettered (existing context is kept)."""
    now = datetime.now(UTC).isoformat()
    headers = {
        ORIGINAL_TOPIC: topic,
        REASON: reason[:_MAX_HEADER],
        ATTEMPTS: str(attempts),
        DEAD_LETTERED_AT: now,
        LAST_FAILURE: message.headers.get(LAST_FAILURE, now),
        FIRST_FAILURE: message.headers.get(FIRST_FAILURE, now),
    }
    if group is not None:
        headers[ORIGINAL_GROUP] = group
    if message.key is not None:
        headers[ORIGINAL_KEY] = message.key
    return headers


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in a dead-letter queue, with the context of its failure."""

    message: Message
    reason: str
    original_topic: str
    attempts: int
    dead_lettered_at: datetime | None
    group: str | None = None

    @classmethod
    def from_message(cls, message: Message, *, default_topic: str) -> DeadLetter:
        """Read the failure context back from the headers :func:`failure_headers` wrote."""
        h = message.headers
        at = h.get(DEAD_LETTERED_AT)
        try:
            when = datetime.fromisoformat(at) if at else None
        except ValueError:
            when = None
        try:
            attempts = int(h.get(ATTEMPTS, "0"))
        except ValueError:
            attempts = 0
        return cls(
            message=message,
            reason=h.get(REASON, ""),
            original_topic=h.get(ORIGINAL_TOPIC, default_topic),
            attempts=attempts,
            dead_lettered_at=when,
            group=h.get(ORIGINAL_GROUP),
        )

    def replayable(self) -> Message:
        """The message to publish back: failure headers dropped, replay count raised."""
        keep = {k: v for k, v in self.message.headers.items()
                if k not in _FAILURE_ONLY}
        count = int(self.message.headers.get(REPLAY_COUNT, "0") or 0) + 1
        keep[REPLAY_COUNT] = str(count)
        return self.message.replace(headers=keep)


# Kept on replay so a message that fails again is recognisable: original topic, first failure.
_FAILURE_ONLY = {REASON, ATTEMPTS, DEAD_LETTERED_AT, ERROR_TYPE, TRACEBACK, LAST_FAILURE,
                 ORIGINAL_GROUP}
