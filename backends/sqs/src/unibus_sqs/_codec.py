"""A Message onto an SQS/SNS message (text body plus at most 10 attributes) and back.

SQS bodies are XML text, never empty; attribute names are restricted and values may not be
empty; a message carries at most 10 attributes. Envelope and user headers travel as native
String attributes while they fit; whatever does not fit (too many, bad names, empty values)
is packed as JSON into one ``unibus-packed`` attribute. Bodies that are not valid text are
sent base64-encoded and marked by ``unibus-body``.

Envelope attributes that hold their defaults are left out (docs/design/sqs-envelope.md):
``ce_specversion`` is never sent, ``ce_type`` and ``ce_source`` only when they differ from
``DEFAULT_TYPE`` / ``DEFAULT_SOURCE``. Decoding puts the defaults back (the Message's own
defaults), so a message round-trips exactly, and one written with all five still decodes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from unibus.errors import SerializationError
from unibus.message import DEFAULT_SOURCE, DEFAULT_TYPE, Message

__all__ = ["MAX_ATTRIBUTES", "decode", "encode", "encode_sized", "fifo_id", "wire_size"]

MAX_ATTRIBUTES = 10
KEY = "unibus-key"
PACKED = "unibus-packed"
BODY = "unibus-body"

_NAME = re.compile(r"^(?!aws\.|amazon\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}(?<!\.)$", re.I)
# Characters SQS accepts in text (the XML 1.0 character range).
_BAD_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FIFO_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
# Envelope fields first: they stay native attributes when user headers must be packed.
_FIRST = ("ce_id", "ce_type", "ce_source", "ce_time", KEY)
_RANK = {name: rank for rank, name in enumerate(_FIRST)}
_STRING = len("String")  # the DataType of every attribute unibus writes

Attributes = dict[str, dict[str, str]]


@functools.lru_cache(maxsize=4096)
def _native_name(name: str) -> bool:
    # Header names repeat from message to message: check each once.
    return bool(_NAME.match(name)) and ".." not in name


def _text(value: str) -> bool:
    """True when SQS accepts ``value`` as text (printable ASCII decided without a regex)."""
    return (value.isascii() and value.isprintable()) or not _BAD_TEXT.search(value)


def _native(name: str, value: str) -> bool:
    return value != "" and _native_name(name) and _text(value)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def encode(message: Message, *, extra: Mapping[str, str] | None = None) -> tuple[str, Attributes]:
    """The SQS body and MessageAttributes for ``message`` (``extra``: more headers)."""
    body, attributes, _ = encode_sized(message, extra=extra)
    return body, attributes


def encode_sized(message: Message, *, extra: Mapping[str, str] | None = None,
                 ) -> tuple[str, Attributes, int]:
    """:func:`encode` and the entry's :func:`wire_size`, counted while it is built."""
    headers = message.wire_headers()
    # Defaults stay off the wire: every attribute costs the client a serialisation and a
    # parse per message, and the server its storage (decode restores them).
    del headers["ce_specversion"]
    if message.type == DEFAULT_TYPE:
        del headers["ce_type"]
    if message.source == DEFAULT_SOURCE:
        del headers["ce_source"]
    if extra:
        headers.update(extra)
    if message.key is not None:
        headers[KEY] = message.key
    body, marker = _encode_body(message.body)
    room = MAX_ATTRIBUTES - (1 if marker else 0)
    if len(headers) <= room and all(_native(n, v) for n, v in headers.items()):
        # The common case: every header is a native attribute, nothing to order or pack.
        attributes: Attributes = {}
        size = _utf8_len(body) + len(headers) * _STRING
        for n, v in headers.items():
            attributes[n] = {"DataType": "String", "StringValue": v}
            size += _utf8_len(n) + _utf8_len(v)
        if marker:
            attributes[BODY] = {"DataType": "String", "StringValue": marker}
            size += len(BODY) + _STRING + len(marker)
        return body, attributes, size
    attributes = _packing(headers, room)
    if marker:
        attributes[BODY] = {"DataType": "String", "StringValue": marker}
    return body, attributes, wire_size(body, attributes)


def _packing(headers: dict[str, str], room: int) -> Attributes:
    """Native attributes for the envelope first, then user headers while they fit; the rest
    packed as JSON into one attribute."""
    last = len(_FIRST)
    ordered = sorted(headers.items(), key=lambda kv: _RANK.get(kv[0], last))
    native = [(n, v) for n, v in ordered if _native(n, v)]
    packed = {n: v for n, v in ordered if not _native(n, v)}
    if len(native) > room or (packed and len(native) > room - 1):
        keep = room - 1
        packed.update(dict(native[keep:]))
        native = native[:keep]
    attributes: Attributes = {n: {"DataType": "String", "StringValue": v} for n, v in native}
    if packed:
        attributes[PACKED] = {"DataType": "String",
                              "StringValue": json.dumps(packed, ensure_ascii=True)}
    return attributes


def _encode_body(body: bytes) -> tuple[str, str | None]:
    if not body:
        return "-", "empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _text(text):
        return text, None
    return base64.b64encode(body).decode("ascii"), "base64"


def wire_size(body: str, attributes: Attributes) -> int:
    """Bytes SQS counts against its limit: body, attribute names, types and values."""
    size = _utf8_len(body)
    for name, attr in attributes.items():
        size += _utf8_len(name) + len(attr["DataType"]) + _utf8_len(attr.get("StringValue", ""))
    return size


def decode(body: str, attributes: Mapping[str, Any] | None) -> Message:
    """Rebuild the Message; messages from other producers keep their String attributes."""
    headers: dict[str, str] = {}
    marker = None
    key = None
    for name, attr in (attributes or {}).items():
        value = attr.get("StringValue")
        if value is None:
            raw = attr.get("BinaryValue")
            if raw is None:
                continue
            value = base64.b64encode(raw).decode("ascii")
        if name == PACKED:
            try:
                packed = json.loads(value)
            except ValueError as exc:
                raise SerializationError(f"malformed {PACKED} attribute: {exc}") from exc
            headers.update({str(k): str(v) for k, v in packed.items()})
        elif name == BODY:
            marker = value
        else:
            headers[name] = value
    key = headers.pop(KEY, None)
    return Message.from_wire(_decode_body(body, marker), headers, key=key)


def _decode_body(body: str, marker: str | None) -> bytes:
    if marker == "empty":
        return b""
    if marker == "base64":
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise SerializationError(f"malformed base64 body: {exc}") from exc
    return body.encode("utf-8")


def fifo_id(value: str, prefix: str = "") -> str:
    """A MessageGroupId / MessageDeduplicationId (printable ASCII, <= 128) for ``value``."""
    candidate = prefix + value
    if _FIFO_ID.match(candidate):
        return candidate
    return prefix + "h-" + hashlib.sha256(value.encode("utf-8")).hexdigest()
