"""Messages to NATS headers and back.

The envelope travels as CloudEvents binary headers (``Message.wire_headers``), the key as the
CloudEvents ``partitionkey`` extension, the id also as ``Nats-Msg-Id`` for deduplication.
Header values NATS cannot carry verbatim (line breaks, surrounding blanks) are sent RFC 2047
style, base64 encoded, and decoded on the way back.

The producers send :func:`header_block`: the NATS header block as bytes, built in one pass per
message, which ``UnibusClient`` writes as it is (nats-py would re-validate and re-encode a
dict header by header). Names are checked once and remembered: there are few of them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import functools
import operator
import re
from collections.abc import Mapping

from unibus.message import Message
from unibus_nats._client import HeaderBlock

__all__ = ["KEY_HEADER", "MSG_ID", "REPLAY_GROUP", "from_nats", "header_block", "to_nats"]

KEY_HEADER = "ce_partitionkey"
#: A DLQ replay is published to the topic's subject, which every group reads; this header names
#: the group it is for, and the other groups' consumers acknowledge it without handing it out.
REPLAY_GROUP = "unibus-replay-group"
MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
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


@functools.lru_cache(maxsize=1024)
def _wire_name(name: str) -> str:
    if not _SAFE_NAME.match(name) or _ENCODED.match(name) or name.startswith("Nats-"):
        return _encode(name)
    return name


def _wire_value(value: str) -> str:
    # Printable text (no control characters, no line breaks) without blanks at either end and
    # not looking encoded travels verbatim: nearly every value, decided in C.
    if (value.isprintable() and value[:1] != " " and value[-1:] != " "
            and not value.startswith("=?")):
        return value
    return _encode(value) if _needs_encoding(value) else value


def _id_value(value: str) -> str:
    """What nats-py sends for a value it is given: stripped, line breaks as blanks."""
    return value.strip().replace("\r", " ").replace("\n", " ")


def to_nats(message: Message, *, msg_id: str | None = None) -> dict[str, str]:
    """The NATS headers carrying ``message`` (``msg_id`` overrides the dedup id)."""
    out: dict[str, str] = {}
    for name, value in message.wire_headers().items():
        out[_wire_name(name)] = _wire_value(value)
    if message.key is not None:
        out[KEY_HEADER] = _wire_value(message.key)
    out[MSG_ID] = msg_id or message.id
    return out


def header_block(
    message: Message, *, stream: str | None = None, msg_id: str | None = None
) -> HeaderBlock:
    """The NATS header block of :func:`to_nats`'s headers, plus ``Nats-Expected-Stream``."""
    template = _template_for(message)
    if template is None:
        text = _render(message)
    else:
        head, middle, tail = template
        text = f"{head}{_wire_value(message.id)}{middle}{message.time.isoformat()}{tail}"
    dedup = msg_id or message.id
    if not dedup.isprintable() or dedup != dedup.strip():
        dedup = _id_value(dedup)
    if stream is None:
        return HeaderBlock(f"{text}{MSG_ID}: {dedup}\r\n\r\n".encode())
    return HeaderBlock(f"{text}{MSG_ID}: {dedup}\r\n{EXPECTED_STREAM}: {stream}\r\n\r\n".encode())


def _render(message: Message) -> str:
    """``NATS/1.0`` and the message's own header lines, each ending in CRLF."""
    lines = ["NATS/1.0"]
    for name, value in message.wire_headers().items():
        lines.append(f"{_wire_name(name)}: {_wire_value(value)}")
    if message.key is not None:
        lines.append(f"{KEY_HEADER}: {_wire_value(message.key)}")
    lines.append("")
    return "\r\n".join(lines)


# Messages of one producer mostly differ only in id and time: render the other lines once per
# shape (every field but those, the body and the headers' items) and fill the two in.
_SHAPE = operator.attrgetter(*(
    f.name for f in dataclasses.fields(Message) if f.name not in {"body", "id", "time", "headers"}
))
_ID_MARK, _TIME_MARK = "\x00id\x00", "\x00time\x00"
_A_WHILE = datetime.timedelta(seconds=1.5)
_templates: dict[object, tuple[str, str, str] | None] = {}


def _template_for(message: Message) -> tuple[str, str, str] | None:
    headers = message.headers
    shape = (_SHAPE(message), tuple(headers.items())) if headers else _SHAPE(message)
    try:
        return _templates[shape]
    except KeyError:
        pass
    except TypeError:  # an unhashable field value
        return None
    template = _make_template(message)
    if len(_templates) >= 256:
        _templates.clear()
    _templates[shape] = template
    return template


def _make_template(message: Message) -> tuple[str, str, str] | None:
    """The rendering split around the id and time values, when ``ce_id`` and ``ce_time`` are
    exactly those and nothing else on the wire depends on them; else None."""
    wire = message.wire_headers()
    try:
        other = message.replace(id=_ID_MARK, time=message.time + _A_WHILE).wire_headers()
    except Exception:
        return None
    varying = {"ce_id", "ce_time"}
    if (list(wire) != list(other) or not varying <= wire.keys()
            or wire["ce_id"] != message.id or wire["ce_time"] != message.time.isoformat()
            or any(wire[name] != other[name] for name in wire if name not in varying)):
        return None
    marks = {"ce_id": _ID_MARK, "ce_time": _TIME_MARK}
    lines = ["NATS/1.0"]
    for name, value in wire.items():
        lines.append(f"{_wire_name(name)}: {marks.get(name) or _wire_value(value)}")
    if message.key is not None:
        lines.append(f"{KEY_HEADER}: {_wire_value(message.key)}")
    lines.append("")
    head, _, rest = "\r\n".join(lines).partition(_ID_MARK)
    middle, found, tail = rest.partition(_TIME_MARK)
    return (head, middle, tail) if found else None


def from_nats(body: bytes, headers: Mapping[str, str] | None) -> Message:
    """Rebuild the message; NATS' own ``Nats-*`` headers are dropped."""
    decoded: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if name.startswith("Nats-"):
            continue
        if name.startswith("=?"):
            name = _decode(name)
        decoded[name] = _decode(value) if value.startswith("=?") else value
    key = decoded.pop(KEY_HEADER, None)
    return Message.from_wire(body, decoded, key=key)
