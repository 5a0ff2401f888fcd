"""Options of the Kafka backend (URL query string or keyword arguments)."""

from __future__ import annotations

from typing import Literal

import pydantic

from unibus.options import BackendOptions

__all__ = ["KafkaOptions"]


class KafkaOptions(BackendOptions):
    """Producer, consumer, security and topology settings.

    The producer defaults follow what a Kafka operator would ask for: idempotent, acks from
    all in-sync replicas, lz4 compression and a short linger to build batches.
    """

    # -- producer -----------------------------------------------------------------------------
    acks: Literal["all", "1", "0"] = pydantic.Field(
        default="all", description="replicas that must acknowledge a publish"
    )
    idempotent: bool = pydantic.Field(
        default=True, description="idempotent producer (no duplicates from producer retries)"
    )
    compression: Literal["lz4", "gzip", "snappy", "zstd", "none"] = "lz4"
    linger_ms: int = pydantic.Field(default=5, ge=0, description="wait to fill a batch")
    batch_size: int = pydantic.Field(default=65536, ge=1024, description="bytes per batch")
    max_message_size: int = pydantic.Field(
        default=1_000_000, ge=1024,
        description="largest message accepted (keep below the broker's message.max.bytes)",
    )
    request_timeout_ms: int = pydantic.Field(default=30_000, ge=1000)

    # -- exactly-once -------------------------------------------------------------------------
    exactly_once: bool = pydantic.Field(
        default=False,
        description="transactional consume-transform-produce; consumers read_committed",
    )
    transactional_id: str | None = pydantic.Field(
        default=None,
        description="stable transactional id of a consumer's transactions (default: unique "
        "per consumer); reuse it after a crash so the open transaction is aborted at once",
    )
    transaction_timeout_ms: int = pydantic.Field(default=60_000, ge=1000)
    isolation_level: Literal["read_committed", "read_uncommitted"] | None = pydantic.Field(
        default=None, description="default: read_committed with exactly_once, else uncommitted"
    )

    # -- consumer -----------------------------------------------------------------------------
    commit_interval_ms: int = pydantic.Field(
        default=500, ge=10, description="how often settled offsets are committed"
    )
    delivery_marks: bool = pydantic.Field(
        default=True,
        description="record in the commit metadata what was handed out, so a message "
        "redelivered after a crash or close counts its attempt",
    )
    retry_tiers: tuple[float, ...] = pydantic.Field(
        default=(1.0, 10.0, 60.0),
        description="delays (s) of the retry topics behind nack(delay)",
    )
    session_timeout_ms: int = pydantic.Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = pydantic.Field(default=1_000, ge=100)
    rebalance_drain_timeout: float = pydantic.Field(
        default=10.0, ge=0,
        description="seconds a revoked partition's in-flight deliveries get to settle",
    )
    join_timeout: float = pydantic.Field(
        default=60.0, gt=0, description="seconds to wait for the first group assignment"
    )

    # -- topology -----------------------------------------------------------------------------
    partitions: int = pydantic.Field(default=1, ge=1, description="of auto-created topics")
    replication: int = pydantic.Field(default=1, ge=1, description="of auto-created topics")

    # -- security -----------------------------------------------------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = (
        pydantic.Field(default=None, description="default from the scheme (kafka+ssl: SSL)")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @pydantic.field_validator("acks", mode="before")
    @classmethod
    def _acks(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @pydantic.field_validator("retry_tiers", mode="before")
    @classmethod
    def _tiers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> KafkaOptions:
        if self.idempotent and self.acks != "all":
            raise ValueError("idempotent=true needs acks=all (or set idempotent=false)")
        if not self.retry_tiers or any(t <= 0 for t in self.retry_tiers):
            raise ValueError("retry_tiers must be positive delays in seconds, e.g. 1,10,60")
        if self.exactly_once and self.isolation_level == "read_uncommitted":
            raise ValueError("exactly_once needs isolation_level=read_committed")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of "
                             "session_timeout_ms")
        return self

    @property
    def isolation(self) -> str:
        if self.isolation_level is not None:
            return self.isolation_level
        return "read_committed" if self.exactly_once else "read_uncommitted"
