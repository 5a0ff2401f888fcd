"""Options of the NATS backend (URL query string or keyword arguments)."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from unibus.durations import parse_duration
from unibus.options import BackendOptions

__all__ = ["NATSOptions"]

_DURATIONS = ("ack_wait", "duplicate_window", "fetch_timeout", "publish_timeout",
              "reconnect_wait")


class NATSOptions(BackendOptions):
    """``mode=jetstream`` (default) persists every topic in a JetStream stream;
    ``mode=core`` uses plain NATS subjects: at most once, nothing kept."""

    mode: Literal["jetstream", "core"] = "jetstream"
    storage: Literal["file", "memory"] = pydantic.Field(
        default="file", description="where streams keep their messages"
    )
    replicas: int = pydantic.Field(default=1, ge=1, le=5, description="stream replicas")
    max_age: float | None = pydantic.Field(
        default=None, description="stream retention (seconds or '7d'); None keeps messages"
    )
    duplicate_window: float = pydantic.Field(
        default=120.0, gt=0, description="how long the stream remembers message ids"
    )
    max_message_size: int = pydantic.Field(
        default=1 << 20, gt=0, description="the server's max_payload (1 MiB by default)"
    )
    ack_wait: float = pydantic.Field(
        default=30.0, gt=0, description="redeliver a delivery not settled within this time"
    )
    backoff: tuple[float, ...] = pydantic.Field(
        default=(), description="redelivery delays after ack_wait expiries (overrides ack_wait)"
    )
    max_ack_pending: int = pydantic.Field(
        default=10_000, ge=1, description="unsettled messages a group may hold in total"
    )
    fetch_timeout: float = pydantic.Field(
        default=1.0, gt=0, description="long-poll of one pull request"
    )
    publish_timeout: float = pydantic.Field(default=10.0, gt=0)
    publish_window: int = pydantic.Field(
        default=1000, ge=1, description="publishes awaiting their PubAck at once"
    )
    double_ack: bool = pydantic.Field(
        default=False, description="ack() waits for the server to confirm the ack"
    )
    reconnect_wait: float = pydantic.Field(default=0.5, gt=0)
    token: str | None = None
    creds: str | None = pydantic.Field(default=None, description="path of a .creds file")
    nkeys_seed: str | None = pydantic.Field(default=None, description="path of an nkey seed")
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls: bool = pydantic.Field(default=False, description="implied by the tls+nats scheme")

    @pydantic.field_validator(*_DURATIONS, "max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @pydantic.field_validator("backoff", mode="before")
    @classmethod
    def _backoff(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return tuple(parse_duration(v) for v in value)
