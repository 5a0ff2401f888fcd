"""Messages on the wire: unibus envelope <-> AMQP properties and headers."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp import encode
from pamqp.commands import Basic

from unibus.errors import InvalidMessageError
from unibus.message import Message

__all__ = [
    "ATTEMPTS_HEADER",
    "PRIORITY_HEADER",
    "TTL_HEADER",
    "Incoming",
    "decode",
    "properties",
    "routing_key",
]

#: The message key (AMQP has none; it also becomes the routing key when it fits).
KEY_HEADER = "x-unibus-key"
#: Failed deliveries before this copy was published (a retry or delayed nack); the
#: broker's own count (quorum x-delivery-count) adds to it.
ATTEMPTS_HEADER = "x-unibus-attempts"
#: User headers mapped onto AMQP properties: priority (0..max_priority) and TTL in seconds.
PRIORITY_HEADER = "unibus-priority"
TTL_HEADER = "unibus-ttl"

_BROKER_HEADERS = ("x-death", "x-delivery-count")
_BROKER_PREFIXES = ("x-first-death-", "x-last-death-", "x-unibus-")


def routing_key(message: Message) -> str:
    """The key when it fits AMQP's 255-byte routing key, else empty (bindings use '#')."""
    key = message.key
    if key is None or len(key.encode()) > 255:
        return ""
    return key


def properties(
    message: Message, *, attempts: int = 0, extra: Mapping[str, str] | None = None
) -> Basic.Properties:
    """Persistent AMQP properties carrying the whole envelope."""
    headers: dict[str, Any] = message.wire_headers()
    if extra:
        headers.update(extra)
    if message.key is not None:
        headers[KEY_HEADER] = message.key
    if attempts:
        headers[ATTEMPTS_HEADER] = attempts
    return _Properties(
        content_type=message.content_type,
        delivery_mode=2,
        priority=_priority(message),
        correlation_id=message.correlation_id,
        expiration=_expiration(message),
        message_id=message.id,
        # time and type travel as ce_time / ce_type only: encoding them twice costs more
        # than the rest of the properties together.
        headers=headers,
    )


class _Properties(Basic.Properties):
    """``Basic.Properties`` whose header table is encoded by :func:`field_table`.

    pamqp encodes a table value by value through its generic type dispatch, about 20 us for
    the envelope's headers, more than the rest of a publish's framing together. No
    ``__slots__`` here: pamqp iterates ``self.__slots__``, which must stay the parent's.
    """

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers" and isinstance(value, dict):
            return field_table(value)
        result: bytes = super().encode_property(name, value)
        return result


_LENGTH = struct.Struct(">I")


def field_table(table: dict[str, Any]) -> bytes:
    """What ``pamqp.encode.field_table`` gives, with string values (all of the envelope's)
    encoded inline; other values and over-long names go through pamqp."""
    parts = []
    for name, value in sorted(table.items()):
        key = name.encode()
        if len(key) > 128:
            return encode.field_table(table)  # pamqp truncates (and warns)
        if type(value) is str:
            text = value.encode()
            parts.append(b"%c%sS%s%s" % (len(key), key, _LENGTH.pack(len(text)), text))
        else:
            parts.append(b"%c%s%s" % (len(key), key, encode.encode_table_value(value)))
    data = b"".join(parts)
    return _LENGTH.pack(len(data)) + data


def _priority(message: Message) -> int | None:
    raw = message.headers.get(PRIORITY_HEADER)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise InvalidMessageError(f"{PRIORITY_HEADER} must be an integer 0..255, got {raw!r}")
    return value


def _expiration(message: Message) -> str | None:
    raw = message.headers.get(TTL_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not (0 <= seconds < 2**32 / 1000) or math.isnan(seconds):
        raise InvalidMessageError(f"{TTL_HEADER} must be seconds (0..4294967), got {raw!r}")
    return str(math.ceil(seconds * 1000))


class Incoming:
    """What a delivery carries besides the message: counts used to compute ``attempt``."""

    __slots__ = ("carried", "delivery_count", "redelivered")

    def __init__(self, carried: int, delivery_count: int | None, redelivered: bool) -> None:
        self.carried = carried
        self.delivery_count = delivery_count
        self.redelivered = redelivered

    @property
    def attempt(self) -> int:
        """1 on first delivery. Quorum queues count redeliveries exactly (x-delivery-count);
        classic queues only flag them, so a redelivery there counts as one more attempt."""
        if self.delivery_count is not None:
            return self.carried + self.delivery_count + 1
        return self.carried + (2 if self.redelivered else 1)


def decode(raw: DeliveredMessage) -> tuple[Message, Incoming]:
    """The unibus message in an AMQP delivery (foreign messages get what we can read)."""
    props = raw.header.properties
    headers: dict[str, str] = {}
    key: str | None = None
    carried = 0
    delivery_count: int | None = None
    for name, value in (props.headers or {}).items():
        if name == KEY_HEADER:
            key = _text(value)
        elif name == ATTEMPTS_HEADER:
            carried = _int(value)
        elif name == "x-delivery-count":
            delivery_count = _int(value)
        elif name in _BROKER_HEADERS or name.startswith(_BROKER_PREFIXES):
            continue
        else:
            headers[name] = _text(value)
    if "ce_id" not in headers and props.message_id:
        headers["ce_id"] = props.message_id
    message = Message.from_wire(raw.body, headers, key=key)
    return message, Incoming(carried, delivery_count, bool(raw.redelivered))


def death_context(raw: DeliveredMessage) -> dict[str, Any]:
    """The broker's own dead-lettering record (x-death), newest first, for DLQ readers."""
    deaths = (raw.header.properties.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return dict(deaths[0])
    return {}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
