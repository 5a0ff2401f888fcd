"""The one capability declaration of the Kafka backend."""

from __future__ import annotations

from unibus.capabilities import Capabilities, DeliveryGuarantee, Ordering, RetentionModel
from unibus_kafka._options import KafkaOptions

__all__ = ["declare"]


def declare(options: KafkaOptions) -> Capabilities:
    """What Kafka honours under ``options``. Pure: no I/O."""
    delivery = {DeliveryGuarantee.AT_LEAST_ONCE}
    reasons = {
        "ordering": "order is kept per partition: messages with the same key go to the same "
        "partition; a nacked message is retried through a retry topic and gives up its place",
        "dead_letter": "Kafka has no dead-letter queue: unibus emulates it with a "
        "'<topic>.dlq' topic carrying the failure context in headers",
        "delayed_delivery": "Kafka delivers a record as soon as it is written; there is no "
        "publish-time delay. nack(delay) works (retry topics with delay tiers); for delayed "
        "publishing use sqlite, rabbitmq, sqs, pulsar or nats",
        "ttl": "Kafka expires records by topic retention (TopicSpec.retention), not per message",
        "priority": "a partition is an ordered log; Kafka has no message priorities",
        "wildcard_subscriptions": "subscribe to Kafka topics by exact name",
        "deduplication": "the idempotent producer only drops its own retried sends; publishing "
        "the same message id twice writes two records (deduplicate by id in the consumer "
        "with unibus.reliability's idempotency stores)",
        "max_message_size": f"messages are limited to {options.max_message_size} bytes by the "
        "max_message_size option (raise it together with the broker's message.max.bytes)",
        "retention": "Kafka keeps records for the topic's retention time (or forever with "
        "retention -1), acknowledged or not; until_ack is not offered",
    }
    if options.exactly_once:
        delivery.add(DeliveryGuarantee.EXACTLY_ONCE)
        reasons["delivery"] = (
            "at-most-once (commit before processing) is not offered; exactly-once covers "
            "consume-transform-produce inside consumer.transaction()"
        )
    else:
        reasons["delivery"] = (
            "offsets are committed after processing (at least once); exactly-once needs "
            "the exactly_once=true option (transactions, read_committed consumers); "
            "at-most-once is not offered"
        )
        reasons["transactions"] = (
            "transactions are off; connect with exactly_once=true to use "
            "consumer.transaction() (transactional produce + offset commit)"
        )
    return Capabilities(
        delivery=frozenset(delivery),
        ordering=Ordering.PARTITION,
        replay=True,
        consumer_groups=True,
        fan_out=True,
        native_dead_letter=False,
        max_delay=None,
        ttl=False,
        priority=False,
        transactions=options.exactly_once,
        dedup_window=None,
        max_message_size=options.max_message_size,
        retention=frozenset({RetentionModel.TIME, RetentionModel.INFINITE}),
        wildcard_subscriptions=False,
        batch_publish=True,
        reasons=reasons,
    )
