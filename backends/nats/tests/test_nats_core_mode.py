"""mode=core: plain NATS subjects and queue groups, at most once, with weaker capabilities."""

from __future__ import annotations

import contextlib

import pytest

import unibus


async def take(consumer: unibus.Consumer, count: int) -> list[unibus.Delivery]:
    got: list[unibus.Delivery] = []
    while len(got) < count:
        got.extend(await consumer.receive_batch(count - len(got), timeout=20))
    return got


async def test_round_trip_and_fan_out(core_bus: unibus.Bus, topic: str) -> None:
    first = await core_bus.consumer(topic)
    second = await core_bus.consumer(topic)
    sent = unibus.Message(body=b"hi", key="k", headers={"a": "b"}, type="t.x")
    receipt = await core_bus.publish(topic, sent)
    assert receipt.message_id == sent.id
    assert receipt.sequence is None  # nothing is stored, so nothing is numbered
    for consumer in (first, second):
        [delivery] = await take(consumer, 1)
        assert delivery.message == sent
        assert delivery.attempt == 1
        assert delivery.position is None
        await delivery.ack()


async def test_a_group_is_a_queue_group(core_bus: unibus.Bus, topic: str) -> None:
    a = await core_bus.consumer(topic, group="g")
    b = await core_bus.consumer(topic, group="g")
    messages = [unibus.Message(body=b"%d" % i) for i in range(60)]
    await core_bus.publish_many(topic, messages)
    seen: dict[str, list[str]] = {"a": [], "b": []}
    while len(seen["a"]) + len(seen["b"]) < 60:
        for name, consumer in (("a", a), ("b", b)):
            with contextlib.suppress(unibus.OperationTimeoutError):
                for delivery in await consumer.receive_batch(60, timeout=0.2):
                    seen[name].append(delivery.message.id)
                    await delivery.ack()
    assert not set(seen["a"]) & set(seen["b"])
    assert sorted(seen["a"] + seen["b"]) == sorted(m.id for m in messages)


async def test_what_core_nats_cannot_do_is_refused(core_bus: unibus.Bus, topic: str) -> None:
    assert core_bus.capabilities.delivery == frozenset({unibus.DeliveryGuarantee.AT_MOST_ONCE})
    consumer = await core_bus.consumer(topic, group="g")
    await core_bus.publish(topic, b"x")
    [delivery] = await take(consumer, 1)
    with pytest.raises(unibus.CapabilityError, match="mode=jetstream"):
        await delivery.nack()
    with pytest.raises(unibus.CapabilityError):
        await consumer.seek("earliest")
    with pytest.raises(unibus.CapabilityError):
        await core_bus.consumer(topic, group="g", max_attempts=3)
    with pytest.raises(unibus.CapabilityError):
        await core_bus.consumer(topic, start="earliest")
    with pytest.raises(unibus.CapabilityError):
        core_bus.dead_letter_queue(topic)
    with pytest.raises(unibus.CapabilityError):
        await core_bus.publish(topic, b"x", delay=5)
    with pytest.raises(unibus.CapabilityError, match="retention"):
        await core_bus.provision(topic, retention="1d")
    with pytest.raises(unibus.MessageTooLargeError):
        await core_bus.publish(topic, b"x" * (1 << 20))
    for requirement in ({"replay": True}, {"deduplication": True},
                        {"delivery": "at_least_once"}, {"retention": "7d"}):
        with pytest.raises(unibus.CapabilityError):
            unibus.connect(core_bus.backend.url, mode="core", requirements=requirement)


async def test_messages_published_with_nobody_subscribed_are_gone(
    core_bus: unibus.Bus, topic: str
) -> None:
    await core_bus.publish(topic, b"into the void")
    late = await core_bus.consumer(topic)
    await core_bus.publish(topic, b"seen")
    [delivery] = await take(late, 1)
    assert delivery.message.body == b"seen"
    await delivery.ack()
    with contextlib.suppress(unibus.OperationTimeoutError):
        extra = await late.receive(timeout=0.5)
        pytest.fail(f"unexpected {extra!r}")
