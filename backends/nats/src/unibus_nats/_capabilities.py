"""The one capability declaration of the NATS backend, per mode."""

from __future__ import annotations

from unibus.capabilities import Capabilities, DeliveryGuarantee, Ordering, RetentionModel
from unibus_nats._options import NATSOptions

__all__ = ["declare"]

_COMMON = {
    "ttl": "unibus messages carry no per-message TTL; set the stream's max_age option instead",
    "priority": "NATS delivers in stream order and has no message priority; "
                "use rabbitmq for priority queues",
    "transactions": "JetStream has no transactions across publishes and acks; "
                    "use kafka for transactions",
    "wildcard_subscriptions": "each unibus topic is one subject in its own stream; subscribe "
                              "to topics by name (NATS wildcards are not mapped)",
    "max_message_size": "the server's max_payload (1 MiB by default) bounds a message "
                        "with its headers; raise max_payload on the server and the "
                        "max_message_size option together",
    "native_dead_letter": "JetStream has no dead-letter stream: unibus publishes the dead "
                          "letter to the '<stream>_DLQ' stream and terminates the original",
    "delayed_delivery": "JetStream delays only redeliveries (nak with delay), not a first "
                        "delivery; use rabbitmq, sqs, pulsar or sqlite for delayed publish",
}

_JETSTREAM = {
    **_COMMON,
    "delivery": "JetStream is at least once: publishes are deduplicated and acks can be "
                "confirmed (double_ack), but a handler that dies after its side effects and "
                "before its ack is confirmed sees the message again, so exactly once does not "
                "hold end to end (use an idempotency store); at most once is mode=core",
    "ordering": "a stream is totally ordered and one member receives it in order, but the "
                "members of a group pull from one durable consumer concurrently and a nak "
                "re-queues a message behind later ones, so no per-key order is kept; use "
                "kafka or pulsar (key_shared) for per-key order",
    "retention": "streams keep messages by limits (max_age) or forever; messages are not "
                 "deleted when acknowledged",
}

_CORE = {
    **_COMMON,
    "delivery": "core NATS (mode=core) delivers at most once to whoever is subscribed at "
                "that moment; use mode=jetstream for at least once",
    "ordering": "core NATS queue groups spread messages over members without key affinity",
    "replay": "core NATS keeps nothing; use mode=jetstream for replay",
    "deduplication": "core NATS has no message-id deduplication; use mode=jetstream",
    "retention": "core NATS keeps no messages at all; use mode=jetstream",
    "dead_letter": "core NATS cannot redeliver or keep dead letters; use mode=jetstream",
}


def declare(options: NATSOptions) -> Capabilities:
    """What NATS, as configured by ``options``, honours."""
    if options.mode == "core":
        return Capabilities(
            delivery=frozenset({DeliveryGuarantee.AT_MOST_ONCE}),
            ordering=Ordering.NONE,
            replay=False,
            consumer_groups=True,
            fan_out=True,
            native_dead_letter=False,
            max_delay=None,
            ttl=False,
            priority=False,
            transactions=False,
            dedup_window=None,
            max_message_size=options.max_message_size,
            retention=frozenset(),
            wildcard_subscriptions=False,
            batch_publish=True,
            reasons=_CORE,
        )
    return Capabilities(
        delivery=frozenset({DeliveryGuarantee.AT_LEAST_ONCE}),
        ordering=Ordering.NONE,
        replay=True,
        consumer_groups=True,
        fan_out=True,
        native_dead_letter=False,
        max_delay=None,
        ttl=False,
        priority=False,
        transactions=False,
        dedup_window=options.duplicate_window,
        max_message_size=options.max_message_size,
        retention=frozenset({RetentionModel.TIME, RetentionModel.INFINITE}),
        wildcard_subscriptions=False,
        batch_publish=True,
        reasons=_JETSTREAM,
    )
