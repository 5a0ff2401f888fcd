"""Messages to NATS headers and back.

The envelope travels as CloudEvents binary headers (``Message.wire_headers``), the key as the
CloudEvents ``partitionkey`` extension, the id also as ``Nats-Msg-Id`` for deduplication.
Header values NATS cannot carry verbatim (line breaks, surrounding blanks) are sent RFC 2047
style, base64 encoded, and decoded on the way back.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from unibus.message import Message

__all__ = ["KEY_HEADER", "MSG_ID", "from_nats", "to_nats"]

KEY_HEADER = "ce_partitionkey"
MSG_ID = "Nats-Msg-Id"
_ENCODED = re.compile(r"^=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=$")
_SAFE_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII without ':'


def _needs_encoding(value: str) -> bool:
    return (value != value.strip() or "\r" in value or "\n" in value
            or "\x00" in value or bool(_ENCODED.match(value)))


def _encode(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def _decode(text: str) -> str:
    match = _ENCODED.match(text)
    if match is None:
        return text
    try:
        return base64.b64decode(match.group(1), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return text


def to_nats(message: Message, *, msg_id: str | None = None) -> dict[str, str]:
    """The NATS headers carrying ``message`` (``msg_id`` overrides the dedup id)."""
    out: dict[str, str] = {}
    for name, value in message.wire_headers().items():
        if not _SAFE_NAME.match(name) or _ENCODED.match(name) or name.startswith("Nats-"):
            name = _encode(name)
        out[name] = _encode(value) if _needs_encoding(value) else value
    if message.key is not None:
        out[KEY_HEADER] = _encode(message.key) if _needs_encoding(message.key) else message.key
    out[MSG_ID] = msg_id or message.id
    return out


def from_nats(body: bytes, headers: Mapping[str, str] | None) -> Message:
    """Rebuild the message; NATS' own ``Nats-*`` headers are dropped."""
    decoded: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if name.startswith("Nats-"):
            continue
        decoded[_decode(name)] = _decode(value)
    key = decoded.pop(KEY_HEADER, None)
    return Message.from_wire(body, decoded, key=key)
