"""The message envelope, publish receipts, and their mapping onto broker headers.

A :class:`Message` is immutable. Its event fields travel as CloudEvents binary-mode headers
(``ce_id``, ``ce_type``, ...) next to the user's own headers, so every broker that carries
string headers carries the whole envelope, and a message read back is equal to the one sent.

For backends' hot paths: :func:`new_id` (the default id, cheaper than ``uuid4``) and
:func:`wire_time` (``ce_time`` as :meth:`Message.wire_headers` writes it, cached per second).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from unibus.errors import InvalidMessageError

__all__ = ["RESERVED_PREFIXES", "Message", "Receipt", "new_id", "wire_time"]

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


# Message ids: 74 random bits drawn once per process (and again in a forked child) followed
# by a 48-bit counter, laid out as an RFC 9562 version-8 UUID. Unique across processes like
# a uuid4 (a collision needs two processes drawing the same 74 bits), a tenth of its cost
# (no urandom call per message), and one process's ids sort in publish order, which keeps
# the B-trees of dedup tables appending instead of splitting pages at random.
_COUNTER_BITS = 48
_id_prefix = ""
_id_counter = itertools.count()


def _draw_id_prefix() -> None:
    global _id_prefix, _id_counter
    bits = int.from_bytes(os.urandom(10), "big") >> 6  # 74 random bits: 48 + 12 + 14
    a, b, c = bits >> 26, (bits >> 14) & 0xFFF, bits & 0x3FFF
    # xxxxxxxx-xxxx-8xxx-[89ab]xxx-<counter>: version 8, variant 10
    _id_prefix = f"{a >> 16:08x}-{a & 0xFFFF:04x}-8{b:03x}-{0x8000 | c:04x}-"
    _id_counter = itertools.count()


_draw_id_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_draw_id_prefix)


def new_id() -> str:
    """A fresh, globally unique message id (a UUID string, 36 characters).

    The default of :attr:`Message.id`. Backends that need ids of their own (dedup ids,
    consumer names) may call it instead of ``str(uuid.uuid4())``: it is several times
    cheaper and still unique across processes, so it is valid as an idempotency key.
    """
    n = next(_id_counter)
    if n >> _COUNTER_BITS:  # 2**48 ids in one process: draw a new prefix
        _draw_id_prefix()
        n = next(_id_counter)
    return f"{_id_prefix}{n:012x}"


_iso_seconds: dict[tuple[int, int, int, int, int, int], str] = {}


def wire_time(moment: datetime) -> str:
    """``moment.isoformat()``, cheaper for the UTC datetimes unibus creates (the text up to
    the second is cached, so a burst of messages formats only its microseconds)."""
    if moment.tzinfo is not UTC:
        return moment.isoformat()
    key = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    head = _iso_seconds.get(key)
    if head is None:
        if len(_iso_seconds) > 64:
            _iso_seconds.clear()
        head = _iso_seconds[key] = moment.replace(microsecond=0, tzinfo=None).isoformat()
    micro = moment.microsecond
    return f"{head}.{micro:06d}+00:00" if micro else f"{head}+00:00"


_FACTORY: Any = object()  # "no argument given": the field's default factory runs
_Class = TypeVar("_Class", bound=type)


def _fast_init(cls: _Class) -> _Class:
    """Give a frozen slots dataclass an ``__init__`` that stores each field through its slot
    descriptor: the same signature, defaults and ``__post_init__`` call as the generated one,
    at about a third of its cost (the generated one calls ``object.__setattr__`` per field,
    which made building a message the largest per-message cost of a publish)."""
    fields = dataclasses.fields(cls)
    scope: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, lines = [], []
    for field in fields:
        name = field.name
        scope[f"_set_{name}"] = cls.__dict__[name].__set__
        if field.default is not dataclasses.MISSING:
            scope[f"_default_{name}"] = field.default
            params.append(f"{name}=_default_{name}")
        elif field.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{name}"] = field.default_factory
            params.append(f"{name}=_FACTORY")
            lines.append(f"    if {name} is _FACTORY: {name} = _factory_{name}()")
        else:
            params.append(name)
    lines += [f"    _set_{f.name}(self, {f.name})" for f in fields]
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}) -> None:\n" + "\n".join(lines)
    exec(source, scope)  # built from the class's own field names, as dataclasses does
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    cls.__init__ = init  # type: ignore[misc]
    return cls


@_fast_init
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
    id: str = dataclasses.field(default_factory=new_id)
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
        # Exact-type checks first: the common message passes them without isinstance calls.
        if type(self.body) is not bytes and not isinstance(self.body, bytes):
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
        if type(headers) is dict:
            if not headers:
                return
        elif not isinstance(headers, Mapping):
            raise InvalidMessageError(
                f"headers must be a mapping of str to str, got {type(headers).__name__}")
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
        """User headers plus the envelope as ``ce_*`` string headers (a new dict each call,
        the caller may change it)."""
        out = dict(self.headers) if self.headers else {}
        out["ce_specversion"] = "1.0"
        out["ce_id"] = self.id
        out["ce_type"] = self.type
        out["ce_source"] = self.source
        out["ce_time"] = wire_time(self.time)
        if self.subject is not None:
            out["ce_subject"] = self.subject
        if self.content_type is not None:
            out["ce_datacontenttype"] = self.content_type
        if self.correlation_id is not None:
            out["ce_correlationid"] = self.correlation_id
        if self.causation_id is not None:
            out["ce_causationid"] = self.causation_id
        if self.schema_version is not None:
            out["ce_schemaversion"] = self.schema_version
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
        field_of = _FROM_WIRE.get
        for name, value in headers.items():
            field = field_of(name)
            if field is not None:
                fields[field] = value
            elif not name.startswith(RESERVED_PREFIXES):  # ce_specversion, unknown extensions
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


@_fast_init
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
