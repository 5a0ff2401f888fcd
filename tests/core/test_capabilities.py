import math

import pytest

import unibus
from unibus.bus import check_requirements
from unibus.capabilities import (
    Capabilities,
    DeliveryGuarantee,
    Ordering,
    Requirements,
    RetentionModel,
    shortfalls,
)

QUEUE_LIKE = Capabilities(
    delivery=frozenset({DeliveryGuarantee.AT_LEAST_ONCE}),
    ordering=Ordering.NONE,
    replay=False,
    consumer_groups=True,
    fan_out=True,
    native_dead_letter=True,
    max_delay=900.0,
    ttl=True,
    priority=False,
    transactions=False,
    dedup_window=None,
    max_message_size=256 * 1024,
    retention=frozenset({RetentionModel.UNTIL_ACK}),
    wildcard_subscriptions=False,
    batch_publish=True,
    reasons={
        "replay": "queues delete messages once acknowledged",
        "ordering": "standard queues do not order",
        "delivery": "standard queues may duplicate",
        "delayed_delivery": "at most 15 minutes",
        "retention": "messages live until acknowledged",
    },
)


def test_met_requirements_have_no_shortfalls() -> None:
    asked = Requirements(delivery="at_least_once", consumer_groups=True,
                         delayed_delivery="15m", retention="until_ack")
    assert shortfalls(asked, QUEUE_LIKE) == []


@pytest.mark.parametrize(
    ("asked", "named", "why"),
    [
        ({"replay": True}, "replay=true", "acknowledged"),
        ({"delivery": "exactly_once"}, "delivery=exactly_once", "duplicate"),
        ({"ordering": "partition"}, "ordering=partition", "do not order"),
        ({"delayed_delivery": "16m"}, "delayed_delivery=16m", "15 minutes"),
        ({"retention": "7d"}, "retention=7d", "until acknowledged"),
        ({"max_message_size": 1 << 20}, "max_message_size", "declare"),
    ],
)
def test_each_shortfall_says_what_and_why(asked: dict[str, object], named: str,
                                           why: str) -> None:
    [short] = shortfalls(Requirements.model_validate(asked), QUEUE_LIKE)
    assert short.requirement.startswith(named)
    assert why in short.reason


def test_refusal_names_requirement_reason_and_backend() -> None:
    class Queue:
        name = "queue"

    with pytest.raises(unibus.CapabilityError) as info:
        check_requirements(Queue, QUEUE_LIKE, Requirements(replay=True, ordering="strict"))
    error = info.value
    assert error.backend == "queue"
    assert "replay=true" in str(error)
    assert "ordering=strict" in str(error)
    assert "queues delete messages once acknowledged" in str(error)


def test_rows_describe_every_dimension() -> None:
    rows = dict(QUEUE_LIKE.rows())
    assert rows["delayed delivery"] == "up to 15m"
    assert rows["max message size"] == "256 KiB"
    assert rows["dead-letter"] == "native"
    assert len(rows) == 15


def test_requirements_reject_unknown_keys_and_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        Requirements.model_validate({"replay_everything": True})
    with pytest.raises(ValueError):  # noqa: PT011
        Requirements.model_validate({"ordering": "sorted"})
    assert Requirements(delayed_delivery=math.inf).delayed_delivery == math.inf
