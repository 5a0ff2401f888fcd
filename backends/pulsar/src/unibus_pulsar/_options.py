"""Options of the Pulsar backend (URL query string or keyword arguments)."""

from __future__ import annotations

import math
from typing import Literal

import pydantic

from unibus.durations import parse_duration
from unibus.options import BackendOptions

__all__ = ["PulsarOptions", "SubscriptionType"]

SubscriptionType = Literal["shared", "key_shared", "failover", "exclusive"]

_DURATIONS = ("nack_redelivery_delay", "send_timeout", "operation_timeout", "max_delay",
              "batching_max_delay")


class PulsarOptions(BackendOptions):
    """Where the topics live, how groups subscribe, and how producers batch.

    A consumer group is a Pulsar subscription of ``subscription_type``: ``shared`` (members
    compete, no order), ``key_shared`` (members compete, order per key), ``failover`` (one
    active member, order kept) or ``exclusive`` (one member only).
    """

    # -- where --------------------------------------------------------------------------------
    tenant: str = pydantic.Field(default="public", min_length=1, pattern=r"^[\w.-]+$")
    namespace: str = pydantic.Field(default="default", min_length=1, pattern=r"^[\w.-]+$")
    admin_url: str | None = pydantic.Field(
        default=None,
        description="admin REST API (default: http://<host>:8080, https://<host>:8443 "
        "for pulsar+ssl)",
    )

    # -- security -----------------------------------------------------------------------------
    auth_token: str | None = pydantic.Field(default=None, description="JWT token auth")
    tls_trust_certs: str | None = pydantic.Field(default=None, description="CA bundle path")
    tls_allow_insecure: bool = False
    tls_validate_hostname: bool = False

    # -- consumers ----------------------------------------------------------------------------
    subscription_type: SubscriptionType = "shared"
    receiver_queue_size: int | None = pydantic.Field(
        default=None, ge=1, description="client-side prefetch queue (default: the consumer's "
        "prefetch)",
    )
    nack_redelivery_delay: float = pydantic.Field(
        default=0.1, gt=0, description="redelivery delay of nack() without a delay",
    )
    dead_letter_subscription: str = pydantic.Field(
        default="unibus-dlq", min_length=1,
        description="subscription on each DLQ topic that keeps its dead letters until "
        "replayed or purged",
    )

    # -- producers ----------------------------------------------------------------------------
    batching: bool = pydantic.Field(
        default=False,
        description="batch messages into one entry; a batch is acknowledged whole unless the "
        "broker runs with acknowledgmentAtBatchIndexLevelEnabled=true, so a consumer that "
        "closes with part of a batch unacknowledged gets the acknowledged part again",
    )
    batching_max_messages: int = pydantic.Field(default=1000, ge=1)
    batching_max_delay: float = pydantic.Field(default=0.005, ge=0)
    compression: Literal["none", "lz4", "zlib", "zstd", "snappy"] = "none"
    max_pending_messages: int = pydantic.Field(default=10_000, ge=1)
    send_timeout: float = pydantic.Field(default=30.0, gt=0)
    operation_timeout: float = pydantic.Field(default=30.0, gt=0)
    deduplication: bool = pydantic.Field(
        default=True,
        description="enable broker deduplication (producer name + sequence id) on the "
        "namespace, so resends after a reconnect are written once",
    )
    max_message_size: int = pydantic.Field(
        default=5 * 1024 * 1024, ge=1024,
        description="largest message accepted (the broker's maxMessageSize)",
    )
    max_delay: float = pydantic.Field(
        default=math.inf, gt=0,
        description="longest publish delay (the broker's delayedDeliveryMaxDelayInMillis; "
        "unlimited by default)",
    )

    @pydantic.field_validator(*_DURATIONS, mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_duration(value)
        return value

    @property
    def competing(self) -> bool:
        """Whether members of a group share the messages (delayed delivery works)."""
        return self.subscription_type in ("shared", "key_shared")
