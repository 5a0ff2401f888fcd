"""Serializers turn application objects into message bodies and back.

A serializer is any object with a ``content_type`` and ``encode``/``decode``; the built-ins
cover raw bytes and JSON (through pydantic, so models, dataclasses and datetimes encode).
Avro or Protobuf plug in the same way. Failures raise
:class:`~unibus.errors.SerializationError`.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, overload, runtime_checkable

import pydantic
import pydantic_core

from unibus.errors import SerializationError

__all__ = ["BytesSerializer", "JsonSerializer", "Serializer", "serializer_for"]

T = TypeVar("T")


@runtime_checkable
class Serializer(Protocol):
    """Encodes objects to bytes and decodes bytes to objects; must be thread-safe."""

    content_type: str

    def encode(self, value: Any) -> bytes:
        """Bytes for ``value``; raises SerializationError when it cannot be encoded."""
        ...

    def decode(self, data: bytes, into: type[Any] | None = None) -> Any:
        """The object in ``data``, validated as ``into`` when given."""
        ...


class BytesSerializer:
    """Bodies are bytes already (``str`` is encoded as UTF-8)."""

    content_type = "application/octet-stream"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        raise SerializationError(
            f"cannot send a {type(value).__name__} as raw bytes; use serializer='json'"
        )

    def decode(self, data: bytes, into: type[Any] | None = None) -> Any:
        if into is str:
            return data.decode()
        return data


class JsonSerializer:
    """JSON through pydantic: models, dataclasses, datetimes, UUIDs and plain values."""

    content_type = "application/json"

    def encode(self, value: Any) -> bytes:
        try:
            return pydantic_core.to_json(value)
        except (pydantic_core.PydanticSerializationError, TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot encode {type(value).__name__} as JSON: {exc}"
            ) from exc

    @overload
    def decode(self, data: bytes, into: type[T]) -> T: ...
    @overload
    def decode(self, data: bytes, into: None = None) -> Any: ...
    def decode(self, data: bytes, into: type[Any] | None = None) -> Any:
        try:
            if into is None:
                return pydantic_core.from_json(data)
            return pydantic.TypeAdapter(into).validate_json(data)
        except (ValueError, pydantic.ValidationError) as exc:
            raise SerializationError(f"cannot decode JSON body: {exc}") from exc


_BUILTIN: dict[str, Any] = {
    "bytes": BytesSerializer(),
    "json": JsonSerializer(),
}


def serializer_for(name_or_serializer: str | Serializer) -> Serializer:
    """Resolve ``"bytes"``, ``"json"`` or a serializer object."""
    if isinstance(name_or_serializer, str):
        try:
            found: Serializer = _BUILTIN[name_or_serializer]
            return found
        except KeyError:
            from unibus.errors import ConfigError

            raise ConfigError(
                f"unknown serializer {name_or_serializer!r}; use one of {sorted(_BUILTIN)} "
                "or pass an object with content_type, encode() and decode()"
            ) from None
    if not isinstance(name_or_serializer, Serializer):
        from unibus.errors import ConfigError

        raise ConfigError("a serializer needs content_type, encode() and decode()")
    return name_or_serializer
