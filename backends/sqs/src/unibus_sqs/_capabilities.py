"""The one capability declaration of the SQS backend; it depends on FIFO and group mode."""

from __future__ import annotations

from unibus.capabilities import Capabilities, DeliveryGuarantee, Ordering, RetentionModel
from unibus_sqs._options import SQSOptions

__all__ = ["MAX_DELAY", "MAX_MESSAGE_SIZE", "declare"]

#: SQS DelaySeconds tops out at 15 minutes.
MAX_DELAY = 900.0
#: 256 KiB: the SNS limit, and the SQS limit that ElasticMQ and moto enforce.
MAX_MESSAGE_SIZE = 256 * 1024
#: FIFO queues remember a MessageDeduplicationId for five minutes.
DEDUP_WINDOW = 300.0

_REPLAY = ("SQS deletes a message once it is acknowledged and has no cursor to rewind; "
           "use kafka, nats, pulsar or sqlite for replay")
_EXACTLY_ONCE_STANDARD = (
    "SQS standard queues deliver at least once and may deliver duplicates; use FIFO mode "
    "(sqs+fifo:// or fifo=true, deduplication by message id within 5 minutes), or kafka with "
    "transactions, or nats, pulsar, or pair at-least-once with an idempotent consumer")
_EXACTLY_ONCE_FIFO = (
    "SQS FIFO deduplicates publishes for 5 minutes but a consumer can still see a message "
    "again after a visibility timeout; pair it with an idempotent consumer")
_AT_MOST_ONCE = "SQS keeps a message until it is deleted; unibus acknowledges after handling"
_ORDERING_STANDARD = ("SQS standard queues do not keep order; use FIFO mode (sqs+fifo://), "
                      "where the message key becomes the MessageGroupId")
_ORDERING_FIFO = ("SQS FIFO orders per MessageGroupId (the message key), not across keys; "
                  "messages without a key are not ordered")
_FAN_OUT_QUEUE = (
    "without SNS a topic is one SQS queue whose consumers share its messages, so a topic "
    "serves one consumer group and ungrouped (private) consumers cannot exist; set "
    "groups=sns with an SNS endpoint (AWS, moto) for fan-out to several groups")
_GROUPS_QUEUE = ("without SNS a topic serves a single consumer group (its queue); other "
                 "groups and private consumers are refused")
_DELAY_FIFO = ("SQS FIFO queues take no per-message DelaySeconds; use standard mode for "
               "delayed delivery (up to 15 minutes)")
_DELAY_STANDARD = "SQS DelaySeconds tops out at 15 minutes; schedule longer delays elsewhere"
_DELAY_SNS = ("SNS publishes carry no DelaySeconds, so with groups=sns there is no "
              "per-message delay; nack(delay) still works; use groups=queue for delayed "
              "delivery (up to 15 minutes)")
_DEDUP_STANDARD = ("SQS standard queues do not deduplicate; use FIFO mode (deduplication by "
                   "message id within 5 minutes)")


def declare(options: SQSOptions) -> Capabilities:
    fifo = options.fifo
    sns = options.group_mode == "sns"
    reasons: dict[str, str] = {
        "replay": _REPLAY,
        "delivery": (_EXACTLY_ONCE_FIFO if fifo else _EXACTLY_ONCE_STANDARD)
        + "; at-most-once: " + _AT_MOST_ONCE,
        "ordering": _ORDERING_FIFO if fifo else _ORDERING_STANDARD,
        "delayed_delivery": _DELAY_FIFO if fifo else _DELAY_SNS if sns else _DELAY_STANDARD,
        "max_message_size": "SQS and SNS messages are at most 256 KiB, attributes included",
        "ttl": ("SQS has no per-message TTL, only the queue's MessageRetentionPeriod "
                "(TopicSpec.retention)"),
        "priority": "SQS has no message priority; use one topic per priority",
        "transactions": "SQS has no transactions; use kafka with transactions",
        "wildcard_subscriptions": "SQS consumers name their queues; there are no wildcards",
        "retention": "SQS keeps a message until it is deleted, at most 14 days",
    }
    if not fifo:
        reasons["deduplication"] = _DEDUP_STANDARD
    if not sns:
        reasons["fan_out"] = _FAN_OUT_QUEUE
        reasons["consumer_groups"] = _GROUPS_QUEUE
    delivery = {DeliveryGuarantee.AT_LEAST_ONCE}
    return Capabilities(
        delivery=frozenset(delivery),
        ordering=Ordering.PARTITION if fifo else Ordering.NONE,
        replay=False,
        consumer_groups=True,
        fan_out=sns,
        native_dead_letter=True,
        max_delay=None if fifo or sns else MAX_DELAY,
        ttl=False,
        priority=False,
        transactions=False,
        dedup_window=DEDUP_WINDOW if fifo else None,
        max_message_size=MAX_MESSAGE_SIZE,
        retention=frozenset({RetentionModel.UNTIL_ACK}),
        wildcard_subscriptions=False,
        batch_publish=True,
        reasons=reasons,
    )
