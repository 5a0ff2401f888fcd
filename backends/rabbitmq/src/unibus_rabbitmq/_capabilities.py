"""The one capability declaration of the RabbitMQ backend."""

from __future__ import annotations

from unibus.capabilities import Capabilities, DeliveryGuarantee, Ordering, RetentionModel
from unibus_rabbitmq._options import RabbitMQOptions

__all__ = ["declare"]

_REPLAY = (
    "RabbitMQ queues delete messages once acknowledged, so nothing can be read again; "
    "use kafka, nats, pulsar or sqlite for replay"
)


def declare(options: RabbitMQOptions) -> Capabilities:
    """What RabbitMQ honours under ``options``."""
    ordered = options.single_active_consumer
    reasons = {
        "delivery": (
            "RabbitMQ gives at-least-once here (manual acks, publisher confirms); it has no "
            "idempotent publish or transactional consume for exactly-once, and unibus does "
            "not consume with auto-ack (at-most-once); use kafka for exactly-once, or an "
            "idempotent consumer (unibus.reliability) for effectively-once"
        ),
        "replay": _REPLAY,
        "retention": (
            "RabbitMQ queues keep a message until it is acknowledged; use kafka, pulsar or "
            "nats for time-based or infinite retention"
        ),
        "transactions": (
            "AMQP transactions are not combined with publisher confirms and are not exposed; "
            "use kafka for transactions or the transactional outbox"
        ),
        "deduplication": (
            "RabbitMQ does not deduplicate by message id; use sqs+fifo, nats or pulsar, or "
            "an idempotent consumer (unibus.reliability.idempotency)"
        ),
        "wildcard_subscriptions": (
            "each unibus topic is its own exchange; subscribe to topics by name"
        ),
        "delayed_delivery": (
            f"delays use TTL queues that dead-letter back, up to max_delay="
            f"{options.max_delay:g}s (RabbitMQ TTLs are 32-bit milliseconds)"
        ),
        "max_message_size": (
            f"max_message_size={options.max_message_size} bytes (RabbitMQ's "
            "max_message_size, 128 MiB by default)"
        ),
    }
    if not ordered:
        reasons["ordering"] = (
            "members of a group consume one queue in parallel, so no order is kept; set "
            "single_active_consumer=true for queue (whole-topic) order per group"
        )
    if options.max_priority is None:
        reasons["priority"] = (
            "priority needs priority queues: set max_priority (queue_type=classic) and send "
            "the `unibus-priority` header"
        )
    return Capabilities(
        delivery=frozenset({DeliveryGuarantee.AT_LEAST_ONCE}),
        ordering=Ordering.STRICT if ordered else Ordering.NONE,
        replay=False,
        consumer_groups=True,
        fan_out=True,
        native_dead_letter=True,
        max_delay=options.max_delay,
        ttl=True,
        priority=options.max_priority is not None,
        transactions=False,
        dedup_window=None,
        max_message_size=options.max_message_size,
        retention=frozenset({RetentionModel.UNTIL_ACK}),
        wildcard_subscriptions=False,
        batch_publish=True,
        reasons=reasons,
    )
