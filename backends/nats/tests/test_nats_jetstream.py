"""JetStream specifics on a real nats-server: consumers, attempts, in-progress acks,
dead letters, dedup, order, topology."""

from __future__ import annotations

import asyncio
import contextlib
import os

import nats
import pytest
from unibus_nats._names import dlq_stream, stream_name
from unibus_nats._wire import REPLAY_GROUP

import unibus
from unibus import deadletter

NATS_URL = os.environ.get("UNIBUS_NATS_URL", "nats://127.0.0.1:4222")


async def take(
    consumer: unibus.Consumer, count: int, timeout: float = 20.0
) -> list[unibus.Delivery]:
    got: list[unibus.Delivery] = []
    while len(got) < count:
        got.extend(await consumer.receive_batch(count - len(got), timeout=timeout))
    return got


async def quiet(consumer: unibus.Consumer, period: float = 1.5) -> None:
    with contextlib.suppress(unibus.OperationTimeoutError):
        extra = await consumer.receive(timeout=period)
        pytest.fail(f"unexpected delivery {extra!r}")


@contextlib.asynccontextmanager
async def raw_js():  # type: ignore[no-untyped-def]
    nc = await nats.connect(NATS_URL)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def test_a_group_is_one_durable_consumer_with_max_deliver_from_max_attempts(
    bus: unibus.Bus, topic: str
) -> None:
    await bus.consumer(topic, group="billing.v2", max_attempts=4)
    await bus.consumer(topic, group="billing.v2", max_attempts=4)
    await bus.consumer(topic, group="audit")
    async with raw_js() as js:
        infos = await js.consumers_info(stream_name(topic))
        names = sorted(i.name for i in infos)
        assert len(names) == 2, names  # members share one durable; fan-out is another
        billing = next(i for i in infos if i.name.startswith("billing_v2"))
        assert billing.config.durable_name == billing.name
        # One more than max_attempts: the delivery past the budget reaches unibus, which
        # dead-letters it (a crash loop), instead of stalling silently on the server.
        assert billing.config.max_deliver == 5


async def test_ungrouped_consumer_is_ephemeral_and_removed_at_close(
    bus: unibus.Bus, topic: str
) -> None:
    consumer = await bus.consumer(topic)
    async with raw_js() as js:
        [info] = await js.consumers_info(stream_name(topic))
        assert info.config.durable_name is None
        await consumer.close()
        assert await js.consumers_info(stream_name(topic)) == []


async def test_publish_receipts_carry_stream_sequence_and_duplicates(
    bus: unibus.Bus, topic: str
) -> None:
    message = unibus.Message(body=b"once")
    first = await bus.publish(topic, message)
    again = await bus.publish(topic, message)
    assert (first.sequence, first.duplicate) == (1, False)
    assert (again.sequence, again.duplicate) == (1, True)
    batch = await bus.publish_many(topic, [unibus.Message(body=b"%d" % i) for i in range(500)]
                                   + [message])
    assert [r.sequence for r in batch[:500]] == list(range(2, 502))
    assert batch[-1].duplicate


async def test_a_window_larger_than_one_write_keeps_its_order_and_receipts(
    bus: unibus.Bus, topic: str
) -> None:
    messages = [unibus.Message(body=b"%06d" % i + b"x" * 20_000) for i in range(120)]
    consumer = await bus.consumer(topic, group="g", prefetch=200)
    receipts = await bus.publish_many(topic, messages)
    assert [r.sequence for r in receipts] == list(range(1, 121))
    assert [r.message_id for r in receipts] == [m.id for m in messages]
    got = await take(consumer, 120)
    assert [d.message for d in got] == messages
    for delivery in got:
        await delivery.ack()


async def test_headers_with_any_names_and_values_round_trip_one_by_one_and_in_batches(
    bus: unibus.Bus, topic: str
) -> None:
    # Names outside nats-py's token set used to be refused by its header encoder.
    odd = {"näme: odd": "v", "a/b": "c", "Nats-Msg-Id": "not ours", "multi": "l1\nl2",
           "pad": " x "}
    messages = [unibus.Message(body=b"%d" % i, key=f"k {i}", headers=odd) for i in range(3)]
    consumer = await bus.consumer(topic, group="g")
    await bus.publish(topic, messages[0])
    await bus.publish_many(topic, messages[1:])
    got = await take(consumer, 3)
    assert [d.message for d in got] == messages
    for delivery in got:
        await delivery.ack()


async def test_attempt_is_the_servers_delivery_count_and_crash_loops_are_dead_lettered(
    bus: unibus.Bus, topic: str
) -> None:
    group = "workers"
    message = unibus.Message(body=b"crashes its consumer")
    await bus.publish(topic, message)
    for attempt in (1, 2):
        consumer = await bus.consumer(topic, group=group, max_attempts=2)
        [delivery] = await take(consumer, 1)
        assert delivery.attempt == attempt
        await consumer.close(drain_timeout=0)  # dies without settling
    survivor = await bus.consumer(topic, group=group, max_attempts=2)
    await quiet(survivor)
    [dead] = await bus.dead_letter_queue(topic, group).list()
    assert dead.message.id == message.id
    assert "max_attempts=2" in dead.reason


async def test_in_progress_acks_keep_a_long_handlers_message(topic: str) -> None:
    async with unibus.connect(NATS_URL, ack_wait=2.0) as bus:
        slow = await bus.consumer(topic, group="g")
        other = await bus.consumer(topic, group="g")
        await bus.publish(topic, unibus.Message(body=b"long job"))
        [delivery] = await take(slow, 1)
        # Several ack_wait periods pass; the heartbeat says "still working".
        await quiet(other, 5.0)
        await delivery.ack()
        await quiet(slow, 1.5)


async def test_a_dead_process_s_delivery_goes_to_another_member_after_ack_wait(
    topic: str
) -> None:
    async with unibus.connect(NATS_URL, ack_wait=1.0) as bus, \
            unibus.connect(NATS_URL, ack_wait=1.0) as doomed:
        owner = await doomed.consumer(topic, group="g")
        await bus.publish(topic, unibus.Message(body=b"job"))
        [delivery] = await take(owner, 1)
        # The owner's process dies: its connection drops, no nak, no heartbeat.
        await doomed.backend._nc.close()  # type: ignore[attr-defined]
        other = await bus.consumer(topic, group="g")
        [again] = await take(other, 1)
        assert again.message.id == delivery.message.id
        # 2, or more when the server handed a redelivery to the dead client's pull request
        # that had not expired yet (it counts as a delivery): the server's count, not ours.
        assert again.attempt >= 2
        await again.ack()
        await owner.close(drain_timeout=0)


async def test_dead_letters_are_kept_per_group_and_listed_per_topic(
    bus: unibus.Bus, topic: str
) -> None:
    billing = await bus.consumer(topic, group="billing")
    audit = await bus.consumer(topic)
    message = unibus.Message(body=b"bad", headers={"trace": "t-1"})
    await bus.publish(topic, message)
    [b] = await take(billing, 1)
    [a] = await take(audit, 1)
    await b.dead_letter("billing says no")
    await a.dead_letter("audit says no")
    await quiet(billing)
    await quiet(audit)
    [for_billing] = await bus.dead_letter_queue(topic, "billing").list()
    assert for_billing.reason == "billing says no"
    assert for_billing.group == "billing"
    assert for_billing.message.headers["trace"] == "t-1"
    everything = await bus.dead_letter_queue(topic).list()
    assert sorted(d.reason for d in everything) == ["audit says no", "billing says no"]
    async with raw_js() as js:
        info = await js.stream_info(dlq_stream(topic))
        assert info.state.messages == 2
    assert await bus.dead_letter_queue(topic, "billing").purge() == 1
    assert [d.reason for d in await bus.dead_letter_queue(topic).list()] == ["audit says no"]


async def test_replayed_dead_letter_is_not_dropped_as_a_duplicate(
    bus: unibus.Bus, topic: str
) -> None:
    consumer = await bus.consumer(topic, group="g")
    message = unibus.Message(body=b"retry later")
    await bus.publish(topic, message)  # its id is in the duplicate window now
    [delivery] = await take(consumer, 1)
    await delivery.dead_letter("downstream was down")
    dlq = bus.dead_letter_queue(topic, "g")
    assert await dlq.replay() == 1
    [replayed] = await take(consumer, 1)
    assert replayed.message.id == message.id
    assert replayed.message.headers[deadletter.REPLAY_COUNT] == "1"
    await replayed.ack()
    assert await dlq.list() == []


async def test_a_group_s_replay_is_skipped_by_ungrouped_consumers_and_loses_its_marker(
    bus: unibus.Bus, topic: str
) -> None:
    billing = await bus.consumer(topic, group="billing")
    watcher = await bus.consumer(topic)  # ungrouped: it saw the message once already
    message = unibus.Message(body=b"once", headers={"trace": "t-1"})
    await bus.publish(topic, message)
    [seen] = await take(watcher, 1)
    await seen.ack()
    [failed] = await take(billing, 1)
    await failed.dead_letter("card declined")
    assert await bus.dead_letter_queue(topic, "billing").replay() == 1
    [again] = await take(billing, 1)
    assert again.message.id == message.id
    assert REPLAY_GROUP not in again.message.headers
    assert again.message.headers["trace"] == "t-1"
    await again.ack()
    await quiet(watcher)
    async with raw_js() as js:  # the watcher acknowledged the copy it skipped
        for _ in range(100):
            infos = await js.consumers_info(stream_name(topic))
            if all(i.num_ack_pending == 0 for i in infos):
                break
            await asyncio.sleep(0.1)
        assert [(i.name, i.num_ack_pending) for i in infos if i.num_ack_pending] == []
        assert len(infos) == 2


async def test_one_member_receives_in_stream_order_and_members_of_a_group_in_increasing_order(
    bus: unibus.Bus, topic: str
) -> None:
    messages = [unibus.Message(body=b"%d" % i, key=f"k{i % 3}") for i in range(200)]
    single = await bus.consumer(topic, group="single", prefetch=200)
    a = await bus.consumer(topic, group="pair", prefetch=7)
    b = await bus.consumer(topic, group="pair", prefetch=7)
    await bus.publish_many(topic, messages)
    got = await take(single, 200)
    for d in got:
        await d.ack()
    assert [d.message.id for d in got] == [m.id for m in messages], "total order, one member"
    seen: dict[str, list[int]] = {"a": [], "b": []}
    while len(seen["a"]) + len(seen["b"]) < 200:
        for name, consumer in (("a", a), ("b", b)):
            with contextlib.suppress(unibus.OperationTimeoutError):
                for d in await consumer.receive_batch(7, timeout=0.2):
                    assert d.position is not None
                    seen[name].append(int(d.position.offset))
                    await d.ack()
    # Each member sees an increasing subsequence of the stream; between members there is no
    # order at all, which is why per-key ordering is not declared.
    for offsets in seen.values():
        assert offsets == sorted(offsets)
    assert sorted(seen["a"] + seen["b"]) == list(range(1, 201))


async def test_graceful_close_commits_what_was_settled_during_the_drain(
    bus: unibus.Bus, topic: str
) -> None:
    consumer = await bus.consumer(topic, group="g", prefetch=10)
    await bus.publish_many(topic, [unibus.Message(body=b"%d" % i) for i in range(10)])
    taken = await take(consumer, 4)

    async def finish_later() -> None:
        for delivery in taken:
            await asyncio.sleep(0.05)  # handler work
            await delivery.ack()

    handler = asyncio.create_task(finish_later())
    await consumer.close(drain_timeout=20)
    await handler
    async with raw_js() as js:
        info = await js.consumer_info(stream_name(topic), "g")
        assert info.ack_floor.stream_seq == 4  # the four handled ones are committed
    successor = await bus.consumer(topic, group="g")
    # Well before ack_wait (30s): the buffered ones were given back (nak) at close.
    rest = await take(successor, 6, timeout=10)
    assert sorted(int(d.message.body) for d in rest) == list(range(4, 10))
    assert all(d.attempt == 2 for d in rest)
    for delivery in rest:
        await delivery.ack()


async def test_double_ack_confirms_each_ack(topic: str) -> None:
    async with unibus.connect(NATS_URL, double_ack=True) as bus:
        consumer = await bus.consumer(topic, group="g")
        await bus.publish(topic, unibus.Message(body=b"x"))
        [delivery] = await take(consumer, 1)
        await delivery.ack()
        async with raw_js() as js:
            info = await js.consumer_info(stream_name(topic), "g")
            assert info.ack_floor.stream_seq == 1


async def test_provision_creates_stream_groups_and_dlq(bus: unibus.Bus, topic: str) -> None:
    await bus.provision(topic, retention="1h", groups=("billing",), max_attempts=3,
                        options={"max_msgs": 1000})
    await bus.provision(topic, retention="1h", groups=("billing",), max_attempts=3,
                        options={"max_msgs": 1000})  # idempotent
    async with raw_js() as js:
        info = await js.stream_info(stream_name(topic))
        assert info.config.max_age == 3600
        assert info.config.max_msgs == 1000
        assert info.config.duplicate_window == 120
        consumer = await js.consumer_info(stream_name(topic), "billing")
        assert consumer.config.max_deliver == 4
        await js.stream_info(dlq_stream(topic))
    with pytest.raises(unibus.CapabilityError, match="partitions"):
        await bus.provision(f"{topic}-p", partitions=3)
    with pytest.raises(unibus.ConfigError, match="max_widgets"):
        await bus.provision(f"{topic}-o", options={"max_widgets": 1})
    await bus.delete_topic(topic)
    async with raw_js() as js:
        assert not [s for s in await js.streams_info() if s.config.name == stream_name(topic)]


async def test_unknown_topic_without_auto_create_refuses_consumers_too(topic: str) -> None:
    async with unibus.connect(NATS_URL, auto_create=False) as bus:
        with pytest.raises(unibus.TopicNotFoundError, match=topic):
            await bus.consumer(topic, group="g")
        with pytest.raises(unibus.TopicNotFoundError, match=topic):
            await bus.publish_many(topic, [unibus.Message(body=b"x")])


async def test_bad_topic_and_seek_arguments_are_config_errors(
    bus: unibus.Bus, topic: str
) -> None:
    with pytest.raises(unibus.ConfigError):
        await bus.publish("orders.*", b"x")
    consumer = await bus.consumer(topic, group="g")
    with pytest.raises(unibus.ConfigError):
        await consumer.seek(unibus.Position(topic="elsewhere", offset=1))
    with pytest.raises(unibus.ConfigError):
        await bus.consumer(topic, group="h", start=unibus.Position(topic="elsewhere", offset=1))


async def test_unreachable_server_is_a_connection_error() -> None:
    bus = unibus.connect("nats://127.0.0.1:1", connect_timeout=1)
    with pytest.raises(unibus.ConnectionFailedError):
        await bus.open()


async def test_a_consumer_deleted_behind_our_back_is_recreated_where_we_were(
    bus: unibus.Bus, topic: str
) -> None:
    consumer = await bus.consumer(topic, group="g")
    await bus.publish(topic, unibus.Message(body=b"first"))
    [first] = await take(consumer, 1)
    await first.ack()
    async with raw_js() as js:
        await js.delete_consumer(stream_name(topic), "g")
    second = unibus.Message(body=b"second")
    await bus.publish(topic, second)
    [again] = await take(consumer, 1)
    assert again.message.id == second.id  # continues after what it saw, no replay
    await again.ack()


async def test_joining_a_group_with_another_max_attempts_moves_the_server_limit(
    bus: unibus.Bus, topic: str
) -> None:
    await bus.consumer(topic, group="g", max_attempts=3)
    await bus.consumer(topic, group="g", max_attempts=6)
    async with raw_js() as js:
        info = await js.consumer_info(stream_name(topic), "g")
        assert info.config.max_deliver == 7
    await bus.consumer(topic, group="g")
    async with raw_js() as js:
        info = await js.consumer_info(stream_name(topic), "g")
        assert info.config.max_deliver == -1


async def test_a_server_list_fails_over_to_a_live_server(topic: str) -> None:
    live = NATS_URL.removeprefix("nats://")
    async with unibus.connect(f"nats://127.0.0.1:1,{live}", connect_timeout=2) as bus:
        consumer = await bus.consumer(topic, group="g")
        await bus.publish(topic, b"through the live one")
        [delivery] = await take(consumer, 1)
        await delivery.ack()


async def test_subscribe_retries_with_delayed_naks_then_dead_letters(
    bus: unibus.Bus, topic: str
) -> None:
    from unibus.reliability.policy import RetryPolicy

    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(message: unibus.Message) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 3:
            done.set()
        raise RuntimeError("downstream is down")

    policy = RetryPolicy.fixed(0.2, 0.2, max_attempts=3)
    async with await bus.subscribe(topic, handler, group="g", policy=policy):
        sent = await bus.publish(topic, b"flaky")
        await asyncio.wait_for(done.wait(), 30)
        dlq = bus.dead_letter_queue(topic, "g")
        deadline = asyncio.get_running_loop().time() + 20
        while not await dlq.list():
            assert asyncio.get_running_loop().time() < deadline, "no dead letter"
            await asyncio.sleep(0.1)  # polling the DLQ
    [dead] = await dlq.list()
    assert dead.message.id == sent.message_id
    assert dead.attempts == 3
    assert attempts == [1, 2, 3]


@pytest.mark.parametrize("mode", ["jetstream", "core"])
async def test_a_max_message_size_above_the_servers_max_payload_still_gets_the_typed_error(
    topic: str, mode: str
) -> None:
    async with unibus.connect(NATS_URL, mode=mode, max_message_size=8 << 20) as bus:
        big = unibus.Message(body=b"x" * (2 << 20))
        with pytest.raises(unibus.MessageTooLargeError, match="max_payload"):
            await bus.publish(topic, big)
        with pytest.raises(unibus.MessageTooLargeError, match="max_payload"):
            await bus.publish_many(topic, [big])
