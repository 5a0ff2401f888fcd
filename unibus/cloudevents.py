"""Lossless mapping between :class:`~unibus.message.Message` and CloudEvents 1.0.

The structured-mode JSON form is produced directly (it is a small, stable dictionary), so the
core does not depend on the ``cloudevents`` SDK; the test suite checks the output against that
SDK. Envelope fields map to context attributes and extensions (``correlationid``,
``causationid``, ``aggregateversion``, ``schemaversion``, ``partitionkey``). User headers whose
names are valid extension names become extensions; the rest travel, JSON-encoded, in the
``unibusheaders`` extension, so nothing is dropped in either direction.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from unibus.errors import InvalidMessageError
from unibus.message import Message

__all__ = ["from_cloudevent", "to_cloudevent"]

_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_CONTEXT = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype",
            "data", "data_base64", "dataschema"}
_ENVELOPE_EXTENSIONS = {
    "correlationid": "correlation_id",
    "causationid": "causation_id",
    "schemaversion": "schema_version",
}
_RESERVED = _CONTEXT | set(_ENVELOPE_EXTENSIONS) | {"aggregateversion", "partitionkey",
                                                    "unibusheaders"}


def to_cloudevent(message: Message) -> dict[str, Any]:
    """The message as a CloudEvents 1.0 structured-mode JSON object (a ``dict``)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": message.id,
        "source": message.source,
        "type": message.type,
        "time": message.time.isoformat(),
        "data_base64": base64.b64encode(message.body).decode("ascii"),
    }
    if message.subject is not None:
        event["subject"] = message.subject
    if message.content_type is not None:
        event["datacontenttype"] = message.content_type
    for extension, field in _ENVELOPE_EXTENSIONS.items():
        value = getattr(message, field)
        if value is not None:
            event[extension] = value
    if message.aggregate_version is not None:
        event["aggregateversion"] = message.aggregate_version
    if message.key is not None:
        event["partitionkey"] = message.key
    packed: dict[str, str] = {}
    for name, value in message.headers.items():
        if _EXTENSION_NAME.match(name) and name not in _RESERVED:
            event[name] = value
        else:
            packed[name] = value
    if packed:
        event["unibusheaders"] = json.dumps(packed, separators=(",", ":"), sort_keys=True)
    return event


def from_cloudevent(event: dict[str, Any]) -> Message:
    """Build a message from a structured-mode CloudEvent; inverse of :func:`to_cloudevent`.

    Events with ``data`` (not base64) get their data JSON-encoded as the body. Raises
    :class:`~unibus.errors.InvalidMessageError` for events missing required attributes.
    """
    missing = [name for name in ("specversion", "id", "source", "type") if name not in event]
    if missing:
        raise InvalidMessageError(f"not a CloudEvent: missing {', '.join(missing)}")
    if event["specversion"] != "1.0":
        raise InvalidMessageError(f"unsupported CloudEvents specversion {event['specversion']!r}")
    body = _body(event)
    fields: dict[str, Any] = {
        "id": str(event["id"]),
        "source": str(event["source"]),
        "type": str(event["type"]),
        "subject": event.get("subject"),
        "content_type": event.get("datacontenttype"),
        "key": event.get("partitionkey"),
    }
    if "time" in event:
        try:
            fields["time"] = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidMessageError(f"CloudEvent time {event['time']!r} is not RFC 3339") from exc
    for extension, field in _ENVELOPE_EXTENSIONS.items():
        if extension in event:
            fields[field] = str(event[extension])
    if "aggregateversion" in event:
        fields["aggregate_version"] = int(event["aggregateversion"])
    headers = {k: str(v) for k, v in event.items() if k not in _RESERVED}
    if "unibusheaders" in event:
        headers.update(json.loads(event["unibusheaders"]))
    return Message(body=body, headers=headers, **fields)


def _body(event: dict[str, Any]) -> bytes:
    if "data_base64" in event:
        try:
            return base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidMessageError("CloudEvent data_base64 is not valid base64") from exc
    if "data" not in event:
        return b""
    data = event["data"]
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and not str(event.get("datacontenttype", "")).endswith("json"):
        return data.encode()
    return json.dumps(data, separators=(",", ":")).encode()
