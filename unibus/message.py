"""The message envelope, publish receipts, and their mapping onto broker headers.

A :class:`Message` is immutable. Its event fields travel as CloudEvents binary-mode headers
(``ce_id``, ``ce_type``, ...) next to the user's own headers, so every broker that carries
string headers carries the whole envelope, and a message read back is equal to the one sent.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from unibus.errors import InvalidMessageError

__all__ = ["RESERVED_PREFIXES", "Message", "Receipt"]

#: Header name prefixes unibus owns; user headers may not start with them.
RESERVED_PREFIXES = ("ce_",)

DEFAULT_TYPE = "unibus.message"
DEFAULT_SOURCE = "unibus"

# Event field -> wire header. Extensions follow the CloudEvents naming rules (lowercase alnum).
_WIRE = {
    "id": "ce_id",
    "type": "ce_type",
    "source": "ce_source",
    "subject": "ce_subject",
    "time": "ce_time",
    "content_type": "ce_datacontenttype",
    "correlation_id": "ce_correlationid",
    "causation_id": "ce_causationid",
    "aggregate_version": "ce_aggregateversion",
    "schema_version": "ce_schemaversion",
}
_FROM_WIRE = {wire: field for field, wire in _WIRE.items()}


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One event: bytes body, ordering key, user headers and the envelope fields.

    ``key`` orders and partitions: messages with the same key keep their order where the
    backend declares per-key ordering. ``headers`` are user headers, ``str -> str``. ``id`` is
    the idempotency key used for deduplication. Construction validates types and raises
    :class:`~unibus.errors.InvalidMessageError`.
    """

    body: bytes = b""
    key: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    id: str = dataclasses.field(default_factory=_new_id)
    type: str = DEFAULT_TYPE
    source: str = DEFAULT_SOURCE
    subject: str | None = None
    time: datetime = dataclasses.field(default_factory=_now)
    content_type: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    aggregate_version: int | None = None
    schema_version: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            if isinstance(self.body, bytearray | memoryview):
                object.__setattr__(self, "body", bytes(self.body))
            else:
                raise InvalidMessageError(
                    f"body must be bytes, got {type(self.body).__name__}; "
                    "encode objects with a serializer (bus.publish does it for you)"
                )
        if self.key is not None and not isinstance(self.key, str):
            raise InvalidMessageError(f"key must be a str or None, got {type(self.key).__name__}")
        if not isinstance(self.id, str) or not self.id:
            raise InvalidMessageError("id must be a non-empty str")
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise InvalidMessageError("time must be a timezone-aware datetime")
        if self.aggregate_version is not None and (
            not isinstance(self.aggregate_version, int) or isinstance(self.aggregate_version, bool)
        ):
            raise InvalidMessageError("aggregate_version must be an int or None")
        headers = self.headers
        for name, value in headers.items():
            if not isinstance(name, str) or not name:
                raise InvalidMessageError(f"header names must be non-empty str, got {name!r}")
            if not isinstance(value, str):
                raise InvalidMessageError(
                    f"header {name!r} must have a str value, got {type(value).__name__}"
                )
            if name.startswith(RESERVED_PREFIXES):
                raise InvalidMessageError(f"header {name!r} uses the reserved prefix 'ce_'")
        if not isinstance(headers, dict):
            object.__setattr__(self, "headers", dict(headers))

    def replace(self, **changes: Any) -> Message:
        """A copy with ``changes`` applied (validated like a new message)."""
        return dataclasses.replace(self, **changes)

    def with_headers(self, **headers: str) -> Message:
        """A copy with ``headers`` added to (or replacing) the user headers."""
        return dataclasses.replace(self, headers={**self.headers, **headers})

    # -- broker headers ---------------------------------------------------------------------

    def wire_headers(self) -> dict[str, str]:
        """User headers plus the envelope as ``ce_*`` string headers."""
        out = dict(self.headers)
        out["ce_specversion"] = "1.0"
        out["ce_id"] = self.id
        out["ce_type"] = self.type
        out["ce_source"] = self.source
        out["ce_time"] = self.time.isoformat()
        for field in ("subject", "content_type", "correlation_id", "causation_id",
                      "schema_version"):
            value = getattr(self, field)
            if value is not None:
                out[_WIRE[field]] = value
        if self.aggregate_version is not None:
            out["ce_aggregateversion"] = str(self.aggregate_version)
        return out

    @classmethod
    def from_wire(
        cls, body: bytes, headers: Mapping[str, str], *, key: str | None = None
    ) -> Message:
        """Rebuild a message from a body and the headers :meth:`wire_headers` produced.

        Messages from producers that are not unibus (no ``ce_id``) get a fresh id; headers
        the envelope does not know stay user headers.
        """
        fields: dict[str, Any] = {}
        user: dict[str, str] = {}
        for name, value in headers.items():
            if name in _FROM_WIRE:
                fields[_FROM_WIRE[name]] = value
            elif name.startswith(RESERVED_PREFIXES):
                continue  # ce_specversion and unknown extensions
            else:
                user[name] = value
        if "time" in fields:
            try:
                fields["time"] = datetime.fromisoformat(fields["time"])
            except ValueError:
                del fields["time"]
        if "aggregate_version" in fields:
            try:
                fields["aggregate_version"] = int(fields["aggregate_version"])
            except ValueError:
                del fields["aggregate_version"]
        return cls(body=body, key=key, headers=user, **fields)


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    """What the broker told us about a publish it acknowledged.

    Fields a broker does not give are ``None``: Kafka gives partition and offset, JetStream
    a stream sequence, SQS a message id and (FIFO) sequence number, Pulsar a message id.
    ``duplicate`` is true when the broker recognised the message id and dropped the copy.
    """

    topic: str
    message_id: str
    partition: int | None = None
    offset: int | None = None
    sequence: int | None = None
    broker_id: str | None = None
    duplicate: bool = False
