"""Topic names and message ids: unibus names on one side, Pulsar's on the other."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import pulsar  # type: ignore[import-untyped]

from unibus.errors import ConfigError
from unibus.positions import Position

__all__ = ["Names", "decode_position", "encode_position"]

_PARTITION = re.compile(r"-partition-\d+$")
_VALID = re.compile(r"^[\w.=:-]+$")


class Names:
    """Maps unibus topic and group names onto persistent topics of one tenant/namespace."""

    def __init__(self, tenant: str, namespace: str) -> None:
        self.tenant = tenant
        self.namespace = namespace
        self.prefix = f"persistent://{tenant}/{namespace}/"

    def topic(self, name: str) -> str:
        """The persistent topic of unibus topic ``name``."""
        if not name or not _VALID.match(name):
            raise ConfigError(
                f"invalid Pulsar topic name {name!r}: use letters, digits, '.', '_', '-', "
                "'=' and ':'"
            )
        return self.prefix + name

    def short(self, full: str) -> str:
        """The unibus topic of a persistent topic (or of one of its partitions)."""
        return _PARTITION.sub("", full.removeprefix(self.prefix))

    @staticmethod
    def dead_letter_topic(topic: str, group: str | None) -> str:
        """Pulsar's own DLQ naming: ``<topic>-<subscription>-DLQ``."""
        return f"{topic}-{group}-DLQ" if group else f"{topic}-DLQ"

    @staticmethod
    def retry_topic(topic: str, subscription: str) -> str:
        """Pulsar's retry letter topic naming: ``<topic>-<subscription>-RETRY``; only that
        subscription's consumers read it."""
        return f"{topic}-{subscription}-RETRY"


def encode_position(topic: str, message_id: Any) -> Position:
    """A replay position: the serialized message id, base64 (an opaque string)."""
    raw = message_id.serialize()
    partition = message_id.partition()
    return Position(topic=topic, offset=base64.b64encode(raw).decode("ascii"),
                    partition=partition if partition >= 0 else None)


def decode_position(position: Position) -> pulsar.MessageId:
    """The message id a position was made from; ConfigError for a foreign position."""
    if not isinstance(position.offset, str):
        raise ConfigError(
            f"a Pulsar position is a serialized message id (str), got {position.offset!r}"
        )
    try:
        raw = base64.b64decode(position.offset.encode("ascii"), validate=True)
        found = pulsar.MessageId.deserialize(raw)
    except (binascii.Error, ValueError, UnicodeError, RuntimeError) as exc:
        raise ConfigError(f"not a Pulsar position: {position.offset!r}") from exc
    return pulsar.MessageId(found.partition(), found.ledger_id(), found.entry_id(),
                            found.batch_index())
