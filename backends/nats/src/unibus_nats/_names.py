"""How unibus names map onto NATS subjects, stream names and consumer names.

A topic is published on the subject of the same name (dots make NATS subject tokens, so
``orders.eu`` is a valid topic); it lives in its own stream. Stream and consumer names may not
contain ``.``, ``*``, ``>``, whitespace or path separators, so those characters become ``_``
and, whenever anything was replaced, a short hash of the original name is appended: two topics
never share a stream (``orders.eu`` -> ``orders_eu_3f2a9c1b``, ``orders_eu`` -> ``orders_eu``).
Dead letters go to the ``<stream>_DLQ`` stream, on ``<topic>.dlq`` (ungrouped consumers) and
``<topic>.dlq.<group>``.
"""

from __future__ import annotations

import hashlib
import re

from unibus.errors import ConfigError

__all__ = ["consumer_name", "dlq_stream", "dlq_subject", "dlq_subjects", "stream_name",
           "subject"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TOKEN = re.compile(r"^[^\s*>.]+$")
_MAX_NAME = 200


def _safe(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name)
    if cleaned != name or len(cleaned) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[:_MAX_NAME]}_{digest}"
    return cleaned


def subject(topic: str) -> str:
    """The subject a topic is published on: the topic itself, if it is a literal subject."""
    if not topic or any(not _TOKEN.match(token) for token in topic.split(".")):
        raise ConfigError(
            f"topic {topic!r} is not a NATS subject: use tokens separated by single dots, "
            "without spaces or the wildcards '*' and '>'"
        )
    if topic.endswith(".dlq") or ".dlq." in topic:
        raise ConfigError(f"topic {topic!r}: '.dlq' tokens are reserved for dead letters")
    return topic


def stream_name(topic: str, prefix: str = "") -> str:
    return _safe(prefix + topic)


def dlq_stream(topic: str, prefix: str = "") -> str:
    return stream_name(topic, prefix) + "_DLQ"


def dlq_subject(topic: str, group: str | None) -> str:
    base = f"{topic}.dlq"
    return base if group is None else f"{base}.{_safe(group)}"


def dlq_subjects(topic: str) -> list[str]:
    return [f"{topic}.dlq", f"{topic}.dlq.>"]


def consumer_name(group: str) -> str:
    return _safe(group)
