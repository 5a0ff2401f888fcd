"""Options of the RabbitMQ backend (URL query string or keyword arguments)."""

from __future__ import annotations

from typing import Literal

import pydantic

from unibus.options import BackendOptions

__all__ = ["MAX_TTL_SECONDS", "RabbitMQOptions"]

#: RabbitMQ keeps TTLs (x-message-ttl, expiration) as unsigned 32-bit milliseconds.
MAX_TTL_SECONDS = (2**32 - 1) / 1000


class RabbitMQOptions(BackendOptions):
    """How topics, groups and dead letters map onto exchanges and queues.

    Queue arguments (type, single active consumer, priority, TTL, length limits) apply to
    the queues unibus declares; RabbitMQ refuses to redeclare an existing queue with other
    arguments, so changing them for an existing group needs a new group (or a policy).
    """

    queue_type: Literal["quorum", "classic"] = pydantic.Field(
        default="quorum", description="type of group queues (quorum: replicated, counts deliveries)"
    )
    single_active_consumer: bool = pydantic.Field(
        default=False, description="one member of a group consumes at a time (queue order)"
    )
    max_priority: int | None = pydantic.Field(
        default=None, ge=1, le=255,
        description="enable priority (classic queues): highest `unibus-priority` header value",
    )
    message_ttl: float | None = pydantic.Field(
        default=None, gt=0, le=MAX_TTL_SECONDS,
        description="seconds a message may wait in a group queue before it is dead-lettered",
    )
    max_length: int | None = pydantic.Field(
        default=None, ge=0, description="most messages a group queue holds (see overflow)"
    )
    max_length_bytes: int | None = pydantic.Field(
        default=None, ge=0, description="most body bytes a group queue holds (see overflow)"
    )
    overflow: Literal["drop-head", "reject-publish", "reject-publish-dlx"] = pydantic.Field(
        default="drop-head",
        description="what a full queue does: drop (dead-letter) its oldest, or refuse publishes",
    )
    delivery_limit: int | None = pydantic.Field(
        default=None, ge=1,
        description="quorum x-delivery-limit for new group queues (default: max_attempts)",
    )
    dead_letter_queue_type: Literal["classic", "quorum"] = pydantic.Field(
        default="classic",
        description="type of DLQs; classic keeps a message's place when browsing requeues it",
    )
    max_message_size: int = pydantic.Field(
        default=128 * 1024 * 1024, gt=0, le=512 * 1024 * 1024,
        description="refuse larger messages before sending (the broker's max_message_size)",
    )
    max_delay: float = pydantic.Field(
        default=7 * 86400.0, gt=0, le=MAX_TTL_SECONDS,
        description="longest publish delay / nack delay in seconds (TTL retry queues)",
    )
    publish_timeout: float = pydantic.Field(
        default=30.0, gt=0, description="seconds to wait for a publisher confirm"
    )
    reconnect_interval: float = pydantic.Field(
        default=1.0, gt=0, description="seconds between reconnection attempts"
    )
    heartbeat: int = pydantic.Field(default=60, ge=0, description="AMQP heartbeat, seconds")

    @pydantic.model_validator(mode="after")
    def _coherent(self) -> RabbitMQOptions:
        if self.queue_type == "quorum":
            if self.max_priority is not None:
                raise ValueError(
                    "max_priority needs queue_type=classic (quorum queues ignore priorities "
                    "before RabbitMQ 4.0)"
                )
            if self.overflow == "reject-publish-dlx":
                raise ValueError(
                    "overflow=reject-publish-dlx needs queue_type=classic; quorum queues "
                    "support drop-head and reject-publish"
                )
        elif self.delivery_limit is not None:
            raise ValueError("delivery_limit needs queue_type=quorum (classic queues do not "
                             "count deliveries)")
        return self
