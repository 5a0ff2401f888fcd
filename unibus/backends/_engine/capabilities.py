"""The one capability declaration of the embedded engine."""

from __future__ import annotations

import math

from unibus.backends._engine.options import EmbeddedOptions
from unibus.capabilities import Capabilities, DeliveryGuarantee, Ordering, RetentionModel

__all__ = ["declare"]


def declare(options: EmbeddedOptions, *, durable: bool) -> Capabilities:
    """What the engine honours under ``options``; ``durable`` is false for ``memory://``."""
    reasons = {
        "delivery": "the embedded engine delivers at least once: a message stays leased "
        "until acknowledged; exactly-once needs consume-transform-produce transactions "
        "and at-most-once (auto-ack) is not offered",
        "ordering": "order is kept per key (a key's unsettled messages are in flight at "
        "one consumer at a time); different keys, and keyless messages, go in parallel",
        "ttl": "messages do not expire individually; use topic retention instead",
        "priority": "the log is delivered in publish order; there are no priorities",
        "transactions": "publish_many is one atomic SQLite transaction, but there is no "
        "consume-transform-produce transaction; use the transactional outbox",
        "wildcard_subscriptions": "subscribe to topics by exact name",
        "dead_letter": "dead letters are kept per topic and group in the same database",
        "delayed_delivery": "delays are unlimited (a deliver-after time per message)",
        "max_message_size": f"messages are limited to {options.max_message_size} bytes by "
        "the max_message_size option",
    }
    if durable:
        reasons["retention"] = (
            "topics keep messages forever, or for a retention time (TopicSpec.retention) "
            "and longer while a group has not consumed them; until_ack is not offered"
        )
    else:
        reasons["retention"] = (
            "memory:// keeps messages in process memory only: they are lost when the last "
            "bus on it closes or the process exits; use sqlite:// for durable retention"
        )
    if options.dedup_window == 0:
        reasons["deduplication"] = "deduplication is off (dedup_window=0)"
    return Capabilities(
        delivery=frozenset({DeliveryGuarantee.AT_LEAST_ONCE}),
        ordering=Ordering.PARTITION,
        replay=True,
        consumer_groups=True,
        fan_out=True,
        native_dead_letter=True,
        max_delay=math.inf,
        ttl=False,
        priority=False,
        transactions=False,
        dedup_window=options.dedup_window or None,
        max_message_size=options.max_message_size,
        retention=frozenset({RetentionModel.TIME, RetentionModel.INFINITE}),
        wildcard_subscriptions=False,
        batch_publish=True,
        reasons=reasons,
    )
