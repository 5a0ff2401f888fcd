"""Pulsar-specific behaviour against the real broker: topology, native features, limits."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pulsar_support
import pytest

import unibus
from unibus import deadletter

TIMEOUT = 30.0


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    return pulsar_support.unique_topic(request)


@pytest.fixture
async def bus() -> AsyncIterator[unibus.Bus]:
    async with connect() as bus:
        yield bus


def connect(**options: Any) -> unibus.Bus:
    return unibus.connect(pulsar_support.URL, **{**pulsar_support.OPTIONS, **options})


async def admin_get(path: str) -> Any:
    async with httpx.AsyncClient(base_url=pulsar_support.ADMIN, timeout=30) as http:
        response = await http.get(path)
        response.raise_for_status()
        return response.json()


def topic_path(topic: str) -> str:
    return (f"/admin/v2/persistent/{pulsar_support.NAMESPACE}/"
            f"{urllib.parse.quote(topic, safe='')}")


async def receive(consumer: unibus.Consumer, count: int, *, settle: str | None = "ack"
                  ) -> list[unibus.Delivery]:
    deadline = time.monotonic() + TIMEOUT
    got: list[unibus.Delivery] = []
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"received {len(got)} of {count}")
        try:
            delivery = await consumer.receive(timeout=remaining)
        except unibus.OperationTimeoutError:
            continue
        if settle == "ack":
            await delivery.ack()
        got.append(delivery)
    return got


async def eventually(probe: Any, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)  # polling interval


# -- topology -------------------------------------------------------------------------------

async def test_partitioned_topic_with_retention_and_groups(bus: unibus.Bus, topic: str) -> None:
    await bus.provision(topic, partitions=3, retention="2h", groups=("billing",))
    await bus.provision(topic, partitions=3, groups=("billing",))  # idempotent
    meta = await admin_get(topic_path(topic) + "/partitions")
    assert meta["partitions"] == 3
    retention = await admin_get(topic_path(topic) + "/retention")
    assert retention["retentionTimeInMinutes"] == 120
    subs = await admin_get(topic_path(topic) + "/subscriptions")
    assert "billing" in subs
    dlq_subs = await admin_get(topic_path(f"{topic}-billing-DLQ") + "/subscriptions")
    assert "unibus-dlq" in dlq_subs

    consumer = await bus.consumer(topic, group="billing")
    messages = [unibus.Message(body=f"m{i}".encode(), key=f"k{i}") for i in range(30)]
    receipts = await bus.publish_many(topic, messages)
    assert {r.partition for r in receipts} <= {0, 1, 2}
    assert len({r.partition for r in receipts}) > 1, "keys spread over the partitions"
    got = await receive(consumer, 30)
    assert sorted(d.message.id for d in got) == sorted(m.id for m in messages)
    assert {d.topic for d in got} == {topic}

    await bus.delete_topic(topic)
    topics = await admin_get(f"/admin/v2/persistent/{pulsar_support.NAMESPACE}/partitioned")
    assert f"persistent://{pulsar_support.NAMESPACE}/{topic}" not in topics


async def test_a_deleted_topic_stays_deleted_while_the_bus_is_open(
        bus: unibus.Bus, topic: str) -> None:
    await bus.publish(topic, b"before")
    await bus.delete_topic(topic)
    # A client producer left open reconnects within its first backoff (100 ms) and, with
    # auto-creation, would re-create the topic well inside this window.
    full = f"persistent://{pulsar_support.NAMESPACE}/{topic}"
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert full not in await admin_get(f"/admin/v2/persistent/{pulsar_support.NAMESPACE}")
        await asyncio.sleep(0.3)  # polling interval
    receipt = await bus.publish(topic, b"after")  # a new producer for the new topic
    assert receipt.topic == topic


async def test_namespace_deduplication_is_enabled(bus: unibus.Bus) -> None:
    assert await admin_get(f"/admin/v2/namespaces/{pulsar_support.NAMESPACE}/deduplication")


async def test_unknown_spec_option_is_refused(bus: unibus.Bus, topic: str) -> None:
    with pytest.raises(unibus.CapabilityError, match=r"cleanup\.policy"):
        await bus.provision(topic, options={"cleanup.policy": "compact"})


async def test_consumer_without_auto_create_needs_the_topic(topic: str) -> None:
    async with connect(auto_create=False) as bus:
        with pytest.raises(unibus.TopicNotFoundError, match=topic):
            await bus.consumer(topic, group="g")
        await bus.provision(topic)
        consumer = await bus.consumer(topic, group="g")
        await bus.publish(topic, b"now it exists")
        [delivery] = await receive(consumer, 1)
        assert delivery.message.body == b"now it exists"


# -- subscriptions --------------------------------------------------------------------------

async def test_ungrouped_subscription_is_removed_at_close(bus: unibus.Bus, topic: str) -> None:
    consumer = await bus.consumer(topic)
    subscription = consumer.subscription  # type: ignore[attr-defined]
    assert subscription in await admin_get(topic_path(topic) + "/subscriptions")
    await consumer.close()
    assert subscription not in await admin_get(topic_path(topic) + "/subscriptions")


async def test_key_shared_members_keep_order_per_key(topic: str) -> None:
    async with connect(subscription_type="key_shared") as bus:
        a = await bus.consumer(topic, group="g", prefetch=10)
        b = await bus.consumer(topic, group="g", prefetch=10)
        keys = [f"key{i}" for i in range(8)]
        messages = [unibus.Message(body=f"{k}:{n}".encode(), key=k)
                    for n in range(20) for k in keys]
        await bus.publish_many(topic, messages)
        seen: dict[str, list[int]] = {k: [] for k in keys}
        owner: dict[str, int] = {}
        total = 0
        deadline = time.monotonic() + TIMEOUT
        while total < len(messages):
            assert time.monotonic() < deadline, f"received {total} of {len(messages)}"
            for index, consumer in enumerate((a, b)):
                try:
                    batch = await consumer.receive_batch(10, timeout=0.2)
                except unibus.OperationTimeoutError:
                    continue
                for delivery in batch:
                    key = delivery.message.key
                    assert key is not None
                    assert owner.setdefault(key, index) == index, "a key stays with a member"
                    seen[key].append(int(delivery.message.body.split(b":")[1]))
                    await delivery.ack()
                    total += 1
        assert all(seqs == list(range(20)) for seqs in seen.values()), seen


async def test_failover_refuses_delayed_publish(topic: str) -> None:
    async with connect(subscription_type="failover") as bus:
        with pytest.raises(unibus.CapabilityError, match="Key_Shared"):
            await bus.publish(topic, b"later", delay=5)


# -- dead letters ---------------------------------------------------------------------------

async def test_crash_loop_is_dead_lettered_with_context(bus: unibus.Bus, topic: str) -> None:
    """A message whose consumers die without settling it reaches the DLQ after
    max_attempts deliveries, counted by the broker's redelivery count."""
    message = unibus.Message(body=b"kills the worker", key="k")
    first = await bus.consumer(topic, group="g", max_attempts=2)
    await bus.publish(topic, message)
    for attempt in (1, 2):
        consumer = first if attempt == 1 else await bus.consumer(topic, group="g",
                                                                 max_attempts=2)
        [delivery] = await receive(consumer, 1, settle=None)
        assert delivery.attempt == attempt
        await consumer.close(drain_timeout=0)  # dies without settling
    survivor = await bus.consumer(topic, group="g", max_attempts=2)
    # Handed out a third time it would be attempt 3: it goes to the DLQ instead.
    with pytest.raises(unibus.OperationTimeoutError):
        await survivor.receive(timeout=3)
    dlq = bus.dead_letter_queue(topic, "g")
    [dead] = await eventually(dlq.list, "the dead letter")
    assert dead.message.id == message.id
    assert dead.message.key == "k"
    assert dead.original_topic == topic
    assert "max_attempts=2" in dead.reason
    assert dead.message.headers[deadletter.ORIGINAL_GROUP] == "g"


async def test_dead_letters_of_ungrouped_consumers(bus: unibus.Bus, topic: str) -> None:
    consumer = await bus.consumer(topic)
    await bus.publish(topic, b"bad")
    [delivery] = await receive(consumer, 1, settle=None)
    await delivery.dead_letter("nobody wants it")
    dlq = bus.dead_letter_queue(topic)
    [dead] = await eventually(dlq.list, "the dead letter")
    assert dead.reason == "nobody wants it"
    assert dead.group is None
    assert await dlq.purge([dead.message.id]) == 1
    assert await dlq.list() == []


# -- replay, compression, positions ---------------------------------------------------------

async def test_positions_are_serialized_message_ids(bus: unibus.Bus, topic: str) -> None:
    consumer = await bus.consumer(topic, group="g")
    await bus.publish_many(topic, [unibus.Message(body=f"m{i}".encode()) for i in range(3)])
    got = await receive(consumer, 3)
    position = got[1].position
    assert position is not None
    assert isinstance(position.offset, str)
    assert base64.b64decode(position.offset)
    later = await bus.consumer(topic, group="late", start=position)
    again = await receive(later, 2)
    assert [d.message.id for d in again] == [d.message.id for d in got[1:]]


async def test_lz4_compression_and_unbatched_producer(topic: str) -> None:
    async with connect(compression="lz4", batching=False) as bus:
        consumer = await bus.consumer(topic, group="g")
        body = b"compressible " * 500
        messages = [unibus.Message(body=body, headers={"n": str(i)}) for i in range(20)]
        receipts = await bus.publish_many(topic, messages)
        assert len({r.broker_id for r in receipts}) == 20
        got = await receive(consumer, 20)
        assert {d.message.body for d in got} == {body}
        stats = await admin_get(topic_path(topic) + "/stats")
        assert stats["bytesInCounter"] < 20 * len(body), "lz4 shrank what was stored"


async def test_delayed_retry_outlives_the_consumer(bus: unibus.Bus, topic: str) -> None:
    """nack(delay) writes to the group's retry topic: a member that closes right after
    does not take the retry with it, and the attempt count travels with the copy."""
    first = await bus.consumer(topic, group="g")
    message = unibus.Message(body=b"retry later", key="k", headers={"h": "v"})
    await bus.publish(topic, message)
    [delivery] = await receive(first, 1, settle=None)
    await delivery.nack(delay=2)
    await first.close()
    second = await bus.consumer(topic, group="g")
    [again] = await receive(second, 1)
    assert again.message == message
    assert again.attempt == 2
    assert again.topic == topic
    assert again.position == delivery.position
    retry = await admin_get(topic_path(f"{topic}-g-RETRY") + "/stats")
    assert retry["msgInCounter"] == 1
