"""Kafka-specific behaviour against the real broker: commits, retries, marks, topology."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import kafka_support
import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
    ConfigResource,
    ConfigResourceType,
)
from unibus_kafka._codec import ATTEMPT, RETRY_TOPIC
from unibus_kafka._topology import retry_topic

import unibus

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
TIMEOUT = 30.0


def new_topic(label: str) -> str:
    topic = f"kt-{label}-{uuid.uuid4().hex[:8]}"
    kafka_support.CREATED.append(topic)
    return topic


def group_for(topic: str) -> str:
    """A group of this test's own: one name shared by two runs on one broker would make their
    members one group across both topics."""
    return f"g-{topic}"


@pytest.fixture
async def bus() -> AsyncIterator[unibus.Bus]:
    async with unibus.connect(kafka_support.URL, **FAST_GROUP) as bus:
        yield bus


async def receive_n(consumer: unibus.Consumer, count: int, *, ack: bool = True,
                    timeout: float = TIMEOUT) -> list[unibus.Delivery]:
    deadline = time.monotonic() + timeout
    got: list[unibus.Delivery] = []
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"received {len(got)} of {count} within {timeout}s")
        with contextlib.suppress(unibus.OperationTimeoutError):
            for delivery in await consumer.receive_batch(count - len(got), remaining):
                if ack:
                    await delivery.ack()
                got.append(delivery)
    return got


async def test_out_of_order_acks_commit_only_the_contiguous_prefix(bus: unibus.Bus) -> None:
    topic = new_topic("prefix")
    group = group_for(topic)
    first = await bus.consumer(topic, group=group)
    messages = [unibus.Message(body=f"m{i}".encode(), key="same") for i in range(5)]
    await bus.publish_many(topic, messages)
    got = await receive_n(first, 5, ack=False)
    for delivery in (got[4], got[2], got[0], got[3]):  # offset 1 stays unsettled
        await delivery.ack()
    await first.close(drain_timeout=0)
    second = await bus.consumer(topic, group=group)
    again = await receive_n(second, 4)
    assert [d.message.id for d in again] == [m.id for m in messages[1:]], \
        "everything from the first unsettled offset on comes again, in order"
    assert again[0].attempt == 2, "the delivery mark counted the earlier delivery"


async def test_publish_many_batches_keep_keys_on_their_partition_and_receipts_exact(
    bus: unibus.Bus,
) -> None:
    topic = new_topic("batches")
    await bus.provision(unibus.TopicSpec(name=topic, partitions=3))
    # Enough records for several batches per partition; keyless ones mixed in.
    messages = [unibus.Message(body=bytes(300), key=None if i % 5 == 0 else f"k{i % 11}",
                               headers={"i": str(i)}) for i in range(1500)]
    receipts = await bus.producer.publish_many(topic, messages)
    assert [r.message_id for r in receipts] == [m.id for m in messages]
    single = {key: await bus.producer.publish(topic, unibus.Message(body=b"one", key=key))
              for key in ("k1", "k7")}  # one record each, through the producer's send()
    records = {(r.partition, r.offset): r for r in await kafka_support.read_topic(topic)}
    assert len(records) == len(messages) + 2
    by_key: dict[str, set[int]] = {}
    for message, receipt in zip(messages, receipts, strict=True):
        record = records[(receipt.partition, receipt.offset)]
        assert dict(record.headers)["ce_id"] == message.id.encode()
        if message.key is not None:
            by_key.setdefault(message.key, set()).add(receipt.partition)
    assert all(len(partitions) == 1 for partitions in by_key.values())
    for key, receipt in single.items():
        assert by_key[key] == {receipt.partition}, "batched and single sends partition alike"
    for key in by_key:  # per-key order is publish order
        offsets = [r.offset for m, r in zip(messages, receipts, strict=True) if m.key == key]
        assert offsets == sorted(offsets)


async def test_attempt_counts_a_consumer_killed_without_settling(bus: unibus.Bus) -> None:
    topic = new_topic("killed")
    group = group_for(topic)
    messages = [unibus.Message(body=f"m{i}".encode(), key="k") for i in range(2)]
    await bus.publish_many(topic, messages)
    async with kafka_support.worker("hold", kafka_support.URL, topic, group, "2") as (_proc, line):
        assert line.split()[1:] == [m.id for m in messages]
    # SIGKILLed holding both: the group notices after the session timeout.
    consumer = await bus.consumer(topic, group=group, max_attempts=5)
    again = await receive_n(consumer, 2, timeout=60)
    assert [d.message.id for d in again] == [m.id for m in messages]
    assert [d.attempt for d in again] == [2, 2]


async def test_nack_goes_through_a_retry_topic_with_the_attempt_in_headers(
    bus: unibus.Bus,
) -> None:
    topic = new_topic("retry")
    group = group_for(topic)
    consumer = await bus.consumer(topic, group=group)
    message = unibus.Message(body=b"again", key="k")
    await bus.publish(topic, message)
    [delivery] = await receive_n(consumer, 1, ack=False)
    await delivery.nack(delay=1.0)
    records = await kafka_support.read_topic(retry_topic(topic, group, 1.0))
    assert len(records) == 1
    headers = {k: v.decode() for k, v in records[0].headers}
    assert headers[ATTEMPT] == "2"
    assert headers[RETRY_TOPIC] == topic
    [retried] = await receive_n(consumer, 1)
    assert retried.message.id == message.id
    assert retried.attempt == 2
    assert retried.topic == topic
    assert ATTEMPT not in retried.message.headers, "retry bookkeeping stays internal"
    assert retried.position is not None
    assert retried.position.offset == delivery.position.offset  # type: ignore[union-attr]


async def test_a_long_nack_delay_does_not_hold_back_a_short_one(bus: unibus.Bus) -> None:
    topic = new_topic("tiers")
    group = group_for(topic)
    consumer = await bus.consumer(topic, group=group)
    slow, quick = unibus.Message(body=b"slow"), unibus.Message(body=b"quick")
    await bus.publish_many(topic, [slow, quick])
    first = {d.message.id: d for d in await receive_n(consumer, 2, ack=False)}
    await first[slow.id].nack(delay=30.0)
    await first[quick.id].nack(delay=0.5)
    [retried] = await receive_n(consumer, 1, timeout=15)
    assert retried.message.id == quick.id


async def test_rebalance_under_load_loses_nothing_and_never_shares_a_message(
    bus: unibus.Bus,
) -> None:
    topic = new_topic("rebalance")
    group = group_for(topic)
    await bus.provision(topic, partitions=4)
    total = 600
    processed: list[str] = []
    in_progress: set[str] = set()
    overlaps: list[str] = []
    done = asyncio.Event()
    trace: list[object] = []
    milestones = {100: asyncio.Event(), 300: asyncio.Event()}

    async def member(consumer: unibus.Consumer, stop: asyncio.Event) -> None:
        while not stop.is_set() and not done.is_set():
            try:
                batch = await consumer.receive_batch(10, timeout=0.2)
            except unibus.OperationTimeoutError:
                continue
            except unibus.ClosedError:
                return
            for delivery in batch:
                mid = delivery.message.id
                if mid in in_progress:
                    overlaps.append(mid)
                in_progress.add(mid)
                await asyncio.sleep(0.001)  # simulated work, interleaving the members
                in_progress.discard(mid)
                processed.append(mid)
                trace.append((id(consumer), delivery.position, delivery.attempt, mid))
                await delivery.ack()
                for count, reached in milestones.items():
                    if len(processed) >= count:
                        reached.set()
            if len(set(processed)) >= total:
                done.set()

    async def produce() -> list[str]:
        ids = []
        for start in range(0, total, 20):
            batch = [unibus.Message(body=f"m{i}".encode(), key=f"k{i % 17}")
                     for i in range(start, start + 20)]
            await bus.publish_many(topic, batch)
            ids.extend(m.id for m in batch)
            await asyncio.sleep(0.02)  # a steady load, not one burst
        return ids

    a = await bus.consumer(topic, group=group, prefetch=20)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(member(a, stop_a))
    producing = asyncio.create_task(produce())
    await asyncio.wait_for(milestones[100].wait(), 60)  # A carries the load alone
    b = await bus.consumer(topic, group=group, prefetch=20)  # A's partitions are rebalanced
    task_b = asyncio.create_task(member(b, stop_b))
    await asyncio.wait_for(milestones[300].wait(), 60)  # both carry it
    stop_a.set()
    await task_a
    await a.close()  # A leaves: B takes every partition
    sent = await producing
    try:
        await asyncio.wait_for(done.wait(), 90)
    finally:
        stop_b.set()
        await task_b
    assert not overlaps, f"messages processed by two members at once: {overlaps[:5]}"
    assert set(processed) == set(sent), f"lost {len(set(sent) - set(processed))}"
    duplicates = len(processed) - len(set(processed))
    assert duplicates == 0, f"{duplicates} processed twice: " + "; ".join(
        str(t) for t in trace if processed.count(t[3]) > 1)


async def test_provision_applies_partitions_retention_and_cleanup_policy(
    bus: unibus.Bus,
) -> None:
    topic = new_topic("provision")
    spec = unibus.TopicSpec(name=topic, partitions=3, retention="1d", groups=("billing",),
                            options={"cleanup.policy": "compact,delete"})
    await bus.provision(spec)
    await bus.provision(spec)  # idempotent
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_support.BOOTSTRAP)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(
            [topic, f"{topic}.dlq", retry_topic(topic, "billing", 10.0)])}
        assert len(described[topic]["partitions"]) == 3
        assert described[f"{topic}.dlq"]["error_code"] == 0
        assert described[retry_topic(topic, "billing", 10.0)]["error_code"] == 0
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs["retention.ms"] == str(86_400_000)
        assert configs["cleanup.policy"] == "compact,delete"
    finally:
        await admin.close()
    await bus.provision(spec.model_copy(update={"partitions": 4}))
    with pytest.raises(unibus.TopologyError, match="cannot reduce"):
        await bus.provision(spec.model_copy(update={"partitions": 2}))
    await bus.delete_topic(topic)
    await bus.delete_topic(topic)  # idempotent


async def test_dlq_purge_deletes_the_records_from_the_log(bus: unibus.Bus) -> None:
    topic = new_topic("purge")
    group = group_for(topic)
    consumer = await bus.consumer(topic, group=group)
    await bus.publish_many(topic, [unibus.Message(body=f"x{i}".encode()) for i in range(3)])
    for delivery in await receive_n(consumer, 3, ack=False):
        await delivery.dead_letter("broken")
    dlq = bus.dead_letter_queue(topic, group)
    assert len(await dlq.list()) == 3
    assert await dlq.purge() == 3
    assert await dlq.list() == []
    assert await kafka_support.read_topic(f"{topic}.dlq") == [], \
        "purge deleted the records (delete_records), not just hid them"


async def test_unknown_topic_without_auto_create_is_refused_to_consumers() -> None:
    topic = new_topic("missing")
    async with unibus.connect(kafka_support.URL, auto_create=False) as bus:
        with pytest.raises(unibus.TopicNotFoundError, match=topic):
            await bus.consumer(topic, group="g")
        with pytest.raises(unibus.TopicNotFoundError, match=topic):
            await bus.consumer(topic)


async def test_a_replay_reaches_a_group_whose_retry_tiers_differ_from_the_replaying_bus(
) -> None:
    topic = new_topic("dlqtiers")
    group = group_for(topic)
    async with unibus.connect(kafka_support.URL, retry_tiers="2,20", **FAST_GROUP) as app:
        consumer = await app.consumer(topic, group=group)
        message = unibus.Message(body=b"bad", headers={"order": "7"})
        await app.publish(topic, message)
        [first] = await receive_n(consumer, 1, ack=False)
        await first.dead_letter("broken")
        # An operator's bus with the default tiers (1, 10, 60) replays it.
        async with unibus.connect(kafka_support.URL, **FAST_GROUP) as ops:
            dlq = ops.dead_letter_queue(topic, group)
            [letter] = await dlq.list()
            assert letter.message.headers["order"] == "7"
            assert not any(name.startswith("unibus-dlq-retry") for name in letter.message.headers)
            assert await dlq.replay() == 1
        # It went to the retry topic this group reads (2 s), not to one of 1 s nobody reads.
        assert len(await kafka_support.read_topic(retry_topic(topic, group, 2.0))) == 1
        [replayed] = await receive_n(consumer, 1)
        assert (replayed.message.id, replayed.attempt) == (message.id, 1)
        assert replayed.message.headers["order"] == "7"
        await consumer.close()


async def test_unreachable_broker_is_a_connection_error() -> None:
    with pytest.raises(unibus.ConnectionFailedError, match=r"127\.0\.0\.1:1\b"):
        await unibus.connect("kafka://127.0.0.1:1", connect_timeout=5)


async def test_a_message_dead_lettered_twice_is_one_dead_letter(bus: unibus.Bus) -> None:
    topic = new_topic("dlqtwice")
    group = group_for(topic)
    consumer = await bus.consumer(topic, group=group)
    message = unibus.Message(body=b"bad")
    await bus.publish(topic, message)
    [first] = await receive_n(consumer, 1, ack=False)
    await first.dead_letter("broken")
    await consumer.seek("earliest")  # at least once: the same record comes again
    [again] = await receive_n(consumer, 1, ack=False)
    await again.dead_letter("broken again")
    assert len(await kafka_support.read_topic(f"{topic}.dlq")) == 2
    dlq = bus.dead_letter_queue(topic, group)
    [letter] = await dlq.list()
    assert letter.reason == "broken again"
    assert await dlq.replay() == 1
    [replayed] = await receive_n(consumer, 1)
    assert replayed.message.id == message.id
    assert await dlq.list() == []
