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
    """``Basic.Properties`` marshalled without pamqp's generic per-value dispatch.

    pamqp encodes each property and header value through a type lookup, about 20 us for
    the envelope's headers alone, more than the rest of a publish's framing together. The
    properties unibus sets (content type, headers, delivery mode, priority, correlation id,
    expiration, message id) are encoded inline here, byte for byte what pamqp produces;
    anything else goes through pamqp. No ``__slots__`` here: pamqp iterates
    ``self.__slots__``, which must stay the parent's.
    """

    def marshal(self) -> bytes:
        if (self.content_encoding is not None or self.reply_to is not None
                or self.timestamp is not None or self.message_type is not None
                or self.user_id is not None or self.app_id is not None or self.cluster_id):
            result: bytes = super().marshal()
            return result
        flags = 0
        parts: list[bytes] = []
        value: Any = self.content_type
        if value:
            flags |= 0x8000
            parts.append(_short(value))
        value = self.headers
        if value is not None:
            flags |= 0x2000
            parts.append(field_table(value) if type(value) is dict
                         else encode.field_table(value))
        for flag, octet in ((0x1000, self.delivery_mode), (0x0800, self.priority)):
            if octet is not None:
                flags |= flag
                parts.append(encode.octet(octet))
        for flag, text in ((0x0400, self.correlation_id), (0x0100, self.expiration),
                           (0x0080, self.message_id)):
            if text:
                flags |= flag
                parts.append(_short(text))
        return _FLAGS.pack(flags) + b"".join(parts)

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers" and isinstance(value, dict):
            return field_table(value)
        result: bytes = super().encode_property(name, value)
        return result


_LENGTH = struct.Struct(">I")
_FLAGS = struct.Struct(">H")


def _short(text: str) -> bytes:
    """AMQP shortstr, as pamqp encodes it (TypeError when not a str or too long)."""
    if type(text) is not str:
        return encode.short_string(text)
    data = text.encode()
    if len(data) > 255:
        return encode.short_string(text)
    return b"%c%s" % (len(data), data)


#: Encoded table entries of values that repeat (every header but the ids and times):
#: name and value are encoded once per process.
_ENTRIES: dict[tuple[str, str], bytes] = {}
_UNIQUE = frozenset(("ce_id", "ce_time", "ce_correlationid", "ce_causationid", KEY_HEADER))


def field_table(table: dict[str, Any]) -> bytes:
    """What ``pamqp.encode.field_table`` gives, with string values (all of the envelope's)
    encoded inline; other values and over-long names go through pamqp."""
    parts = []
    entries = _ENTRIES
    for name, value in sorted(table.items()):
        if type(value) is str:
            entry = None if name in _UNIQUE else entries.get((name, value))
            if entry is None:
                key = name.encode()
                if len(key) > 128:
                    return encode.field_table(table)  # pamqp truncates (and warns)
                text = value.encode()
                entry = b"%c%sS%s%s" % (len(key), key, _LENGTH.pack(len(text)), text)
                if name not in _UNIQUE:
                    if len(entries) >= 1024:
                        entries.clear()
                    entries[name, value] = entry
            parts.append(entry)
        else:
            key = name.encode()
            if len(key) > 128:
                return encode.field_table(table)
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
