"""The one capability declaration of the Pulsar backend; it depends on the subscription type."""

from __future__ import annotations

from unibus.capabilities import Capabilities, DeliveryGuarantee, Ordering, RetentionModel
from unibus.durations import format_duration
from unibus_pulsar._options import PulsarOptions

__all__ = ["declare"]

_BASE_REASONS = {
    "delivery": "Pulsar subscriptions deliver at least once (ack after processing); "
    "exactly-once needs Pulsar transactions, which pulsar-client for Python does not expose; "
    "at-most-once is not offered",
    "transactions": "pulsar-client for Python has no transaction API (the Java and Go clients "
    "have one); use kafka (exactly_once=true) for transactions",
    "dead_letter": "native: the consumer's dead-letter policy (max redeliver count = "
    "max_attempts) and dead_letter() both write to the '<topic>-<group>-DLQ' topic",
    "ttl": "Pulsar expires messages per namespace or topic (message TTL policy), not per "
    "message",
    "priority": "Pulsar topics have no message priorities",
    "wildcard_subscriptions": "unibus subscribes Pulsar topics by exact name (regex "
    "subscriptions are not mapped)",
    "deduplication": "Pulsar deduplicates by producer name and sequence id: a producer's "
    "resends after a reconnect are dropped (enabled), but publishing the same message id "
    "twice writes two messages; deduplicate by id in the consumer with "
    "unibus.reliability's idempotency stores, or use nats or sqs+fifo",
    "retention": "until acknowledged by every subscription by default; time or infinite "
    "with a retention policy (TopicSpec.retention)",
}

_ORDERING = {
    "shared": "a Shared subscription hands messages to its members round-robin and "
    "redelivers nacked ones out of order; connect with subscription_type=key_shared (order "
    "per key) or failover for ordering",
    "key_shared": "order is kept per key (Key_Shared subscription); a nacked message is "
    "redelivered after newer messages of its key",
    "failover": "order is kept per partition (one active consumer per partition); a nacked "
    "message is redelivered after newer messages",
    "exclusive": "order is kept per partition (one consumer per subscription); a nacked "
    "message is redelivered after newer messages",
}


def declare(options: PulsarOptions) -> Capabilities:
    """What Pulsar honours under ``options``. Pure: no I/O."""
    kind = options.subscription_type
    reasons = dict(_BASE_REASONS)
    reasons["ordering"] = _ORDERING[kind]
    reasons["max_message_size"] = (
        f"messages are limited to {options.max_message_size} bytes by the max_message_size "
        "option (the broker's maxMessageSize; raise both together)"
    )
    if options.competing:
        reasons["delayed_delivery"] = (
            "deliver_after is honoured by Shared and Key_Shared subscriptions "
            f"(limit: max_delay={format_duration(options.max_delay)})"
        )
    else:
        reasons["delayed_delivery"] = (
            f"Pulsar dispatches delayed messages at once on {kind.capitalize()} "
            "subscriptions; delayed delivery needs a Shared or Key_Shared subscription "
            "(subscription_type=shared or key_shared)"
        )
    groups = kind != "exclusive"
    if not groups:
        reasons["consumer_groups"] = (
            "an Exclusive subscription admits a single consumer (the broker refuses a second "
            "member); use subscription_type=shared, key_shared or failover for groups"
        )
    return Capabilities(
        delivery=frozenset({DeliveryGuarantee.AT_LEAST_ONCE}),
        ordering=Ordering.NONE if kind == "shared" else Ordering.PARTITION,
        replay=True,
        consumer_groups=groups,
        fan_out=True,
        native_dead_letter=True,
        max_delay=options.max_delay if options.competing else None,
        ttl=False,
        priority=False,
        transactions=False,
        dedup_window=None,
        max_message_size=options.max_message_size,
        retention=frozenset(RetentionModel),
        wildcard_subscriptions=False,
        batch_publish=True,
        reasons=reasons,
    )
