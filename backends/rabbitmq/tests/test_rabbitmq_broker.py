"""RabbitMQ's native features, on the real broker: topology, unroutable publishes, native
dead-lettering, delivery counts, retry queues, single active consumer, priority, TTL,
length limits, prefetch and close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest
from rabbitmq_support import URL, remember
from unibus_rabbitmq._topology import Names

import unibus
from unibus import TopicSpec
from unibus.reliability import FixedBackoff, RetryPolicy

TIMEOUT = 20.0


@pytest.fixture
def topic() -> str:
    return f"rt-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def opened(**options: Any) -> AsyncIterator[unibus.Bus]:
    bus = unibus.connect(URL, **options)
    await bus.open()
    try:
        yield bus
    finally:
        remember(bus.backend)
        await bus.close()


@contextlib.asynccontextmanager
async def raw_channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(URL)
    try:
        async with connection.channel() as channel:
            yield channel
    finally:
        await connection.close()


async def eventually(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)  # polling interval


async def receive(consumer: unibus.Consumer) -> unibus.Delivery:
    return await consumer.receive(timeout=TIMEOUT)


async def queue_exists(name: str) -> bool:
    try:
        async with raw_channel() as channel:
            await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    except aiormq.exceptions.ChannelLockedResource:
        return True  # exclusive to another connection: it exists
    return True


# -- topology -------------------------------------------------------------------------------


async def test_a_group_is_a_durable_quorum_queue_with_a_dead_letter_exchange(topic: str) -> None:
    async with opened() as bus:
        await bus.consumer(topic, group="billing")
    queue = Names.queue(topic, "billing")
    assert await queue_exists(queue)
    assert await queue_exists(Names.dlq(topic, "billing"))
    # Redeclaring with other arguments is refused: proves the type and DLX it has.
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        async with raw_channel() as channel:
            await channel.declare_queue(queue, durable=True,
                                        arguments={"x-queue-type": "classic"})
    async with raw_channel() as channel:
        await channel.declare_queue(queue, durable=True, arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": Names.dlx(topic),
            "x-dead-letter-routing-key": Names.dlq(topic, "billing"),
        })


async def test_publishing_to_a_topic_no_queue_is_bound_to_is_an_error(topic: str) -> None:
    async with opened() as bus:
        with pytest.raises(unibus.PublishError, match="unroutable"):
            await bus.publish(topic, b"into the void")


async def test_a_window_fails_exactly_the_returned_messages(topic: str) -> None:
    async with opened() as bus:
        await bus.provision(TopicSpec(name=topic))  # the exchange, no group queue
        queue = f"{topic}.only-yes"
        async with raw_channel() as channel:
            declared = await channel.declare_queue(queue, auto_delete=False)
            await declared.bind(topic, "yes")
        try:
            sent = [unibus.Message(body=f"{i}".encode(), key="yes" if i % 3 else "no")
                    for i in range(30)]
            with pytest.raises(unibus.PublishError, match="unroutable") as caught:
                await bus.publish_many(topic, sent)
            assert [r.message_id for r in caught.value.receipts] == [
                m.id for m in sent if m.key == "yes"]
            # The channel goes on: a whole window is confirmed, nothing is left behind.
            again = [unibus.Message(body=b"x", key="yes") for _ in range(5)]
            receipts = await bus.publish_many(topic, again)
            assert [r.message_id for r in receipts] == [m.id for m in again]
            # Copies of one message (one id): each copy gets its own answer.
            yes, no = unibus.Message(body=b"y", key="yes"), unibus.Message(body=b"n", key="no")
            with pytest.raises(unibus.PublishError, match="unroutable") as caught:
                await bus.publish_many(topic, [yes, no, no, yes, no])
            assert [r.message_id for r in caught.value.receipts] == [yes.id, yes.id]
            async with raw_channel() as channel:
                declared = await channel.declare_queue(queue, passive=True)
                assert declared.declaration_result.message_count == 20 + 5 + 2
        finally:
            async with raw_channel() as channel:
                await channel.queue_delete(queue)


async def test_concurrent_publishes_of_one_message_each_get_their_own_answer(
    topic: str,
) -> None:
    """A basic.return names its message only by id: the same message sent at once to a
    topic nobody listens to and to one that is bound fails only where it was returned."""
    void, bound = f"{topic}-void", f"{topic}-bound"
    queue = f"{bound}.listener"
    async with opened() as bus:
        await bus.provision(TopicSpec(name=void))
        await bus.provision(TopicSpec(name=bound))
        async with raw_channel() as channel:
            declared = await channel.declare_queue(queue, auto_delete=False)
            await declared.bind(bound, "#")
        try:
            for n in range(3):
                message = unibus.Message(body=f"twice {n}".encode())
                # The unroutable copy goes out first, so its return comes while the routed
                # copy is still unconfirmed.
                lost, kept = await asyncio.gather(
                    bus.publish(void, message), bus.publish(bound, message),
                    return_exceptions=True)
                assert isinstance(lost, unibus.PublishError), lost
                assert "unroutable" in str(lost)
                assert isinstance(kept, unibus.Receipt), kept
                lost, kept = await asyncio.gather(
                    bus.publish_many(void, [message, unibus.Message(body=b"other")]),
                    bus.publish_many(bound, [message]), return_exceptions=True)
                assert isinstance(lost, unibus.PublishError), lost
                assert lost.receipts == []
                assert isinstance(kept, list)
                assert [r.message_id for r in kept] == [message.id]
            async with raw_channel() as channel:
                declared = await channel.declare_queue(queue, passive=True)
                assert declared.declaration_result.message_count == 6
        finally:
            async with raw_channel() as channel:
                await channel.queue_delete(queue)


async def test_provisioned_groups_keep_messages_published_before_they_consume(
    topic: str,
) -> None:
    async with opened() as bus:
        # Partitions are a parallelism hint RabbitMQ has no use for (members compete).
        await bus.provision(TopicSpec(name=topic, groups=("billing", "audit"), partitions=4))
        sent = unibus.Message(body=b"early")
        await bus.publish(topic, sent)
        for group in ("billing", "audit"):
            consumer = await bus.consumer(topic, group=group)
            delivery = await receive(consumer)
            assert delivery.message.id == sent.id
            await delivery.ack()


async def test_without_auto_create_missing_topics_and_groups_are_typed_errors(
    topic: str,
) -> None:
    async with opened(auto_create=False) as bus:
        with pytest.raises(unibus.TopicNotFoundError):
            await bus.consumer(topic, group="g")
        await bus.provision(TopicSpec(name=topic, groups=("known",)))
        with pytest.raises(unibus.TopologyError, match="provision"):
            await bus.consumer(topic, group="unknown")
        consumer = await bus.consumer(topic, group="known")
        await bus.publish(topic, b"ok")
        await (await receive(consumer)).ack()


async def test_provision_refuses_what_rabbitmq_cannot_honour(topic: str) -> None:
    async with opened(queue_type="classic") as bus:
        with pytest.raises(unibus.CapabilityError, match="replicat"):
            await bus.provision(TopicSpec(name=topic, groups=("g",), replication=3))
        with pytest.raises(unibus.CapabilityError, match="retention"):
            await bus.provision(TopicSpec(name=topic, retention="7d"))
        with pytest.raises(unibus.ConfigError):
            await bus.provision(TopicSpec(name=topic, options={"cleanup.policy": "compact"}))


async def test_private_queue_is_removed_at_close_and_delete_topic_removes_the_rest(
    topic: str,
) -> None:
    async with opened() as bus:
        private = await bus.consumer(topic)
        await bus.consumer(topic, group="g")
        [queue] = private._queues.values()  # type: ignore[attr-defined]
        assert await queue_exists(queue)
        await private.close()
        assert await eventually(lambda: _gone(queue), "the private queue to go")
        await bus.delete_topic(topic)
        for name in (Names.queue(topic, "g"), Names.dlq(topic, "g"), Names.dlq(topic, None)):
            assert not await queue_exists(name)


async def _gone(queue: str) -> bool:
    return not await queue_exists(queue)


# -- attempts, retries and dead letters -----------------------------------------------------


async def test_attempt_counts_consumer_deaths_through_x_delivery_count(topic: str) -> None:
    async with opened() as bus:
        sent = unibus.Message(body=b"crashes its consumers")
        await bus.provision(TopicSpec(name=topic, groups=("g",)))
        await bus.publish(topic, sent)
        for attempt in (1, 2, 3):
            consumer = await bus.consumer(topic, group="g")
            delivery = await receive(consumer)
            assert (delivery.message.id, delivery.attempt) == (sent.id, attempt)
            await consumer.close(drain_timeout=0)  # dies without settling


async def test_delayed_nacks_go_through_retry_queues_and_keep_counting(topic: str) -> None:
    async with opened() as bus:
        consumer = await bus.consumer(topic, group="g")
        sent = unibus.Message(body=b"retry later")
        await bus.publish(topic, sent)
        delivery = await receive(consumer)
        await delivery.nack(delay=0.3)
        assert await queue_exists(Names.retry(Names.queue(topic, "g"), 500))
        delivery = await receive(consumer)
        assert delivery.attempt == 2
        await delivery.nack()  # requeued on the quorum queue: the broker counts it
        delivery = await receive(consumer)
        assert delivery.attempt == 3
        await delivery.nack(delay=0.05)
        delivery = await receive(consumer)
        assert (delivery.message, delivery.attempt) == (sent, 4)
        await delivery.ack()


async def test_a_retry_queue_declared_with_other_arguments_is_used_as_it_is(
    topic: str,
) -> None:
    queue = Names.queue(topic, "g")
    async with opened() as bus:
        consumer = await bus.consumer(topic, group="g")
        async with raw_channel() as channel:  # as an earlier unibus declared it
            await channel.declare_queue(Names.retry(queue, 500), durable=True, arguments={
                "x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish", "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue, "x-expires": 90_500})
        sent = unibus.Message(body=b"retry later")
        await bus.publish(topic, sent)
        await (await receive(consumer)).nack(delay=0.3)
        delivery = await receive(consumer)
        assert (delivery.message, delivery.attempt) == (sent, 2)
        await delivery.ack()


async def test_delivery_limit_dead_letters_natively_with_the_brokers_context(
    topic: str,
) -> None:
    async with opened() as bus:
        creator = await bus.consumer(topic, group="g", max_attempts=2)  # x-delivery-limit=2
        await creator.close()
        sent = unibus.Message(body=b"poison")
        await bus.publish(topic, sent)
        # A client that is not unibus keeps requeueing it: the broker stops that.
        async with raw_channel() as channel:
            queue = await channel.declare_queue(Names.queue(topic, "g"), passive=True)
            for _ in range(3):
                message = await eventually(lambda: queue.get(fail=False), "a redelivery")
                await message.nack(requeue=True)
        dlq = bus.dead_letter_queue(topic, "g")
        [dead] = await eventually(dlq.list, "the dead letter")
        assert dead.message.id == sent.id
        assert dead.reason == "rabbitmq: delivery_limit"
        assert dead.original_topic == topic
        assert dead.dead_lettered_at is not None


async def test_dead_letter_queue_browsing_keeps_order_and_content(topic: str) -> None:
    async with opened() as bus:
        consumer = await bus.consumer(topic, group="g")
        sent = [unibus.Message(body=f"m{i}".encode(), key=f"k{i}") for i in range(5)]
        await bus.publish_many(topic, sent)
        for _ in sent:
            await (await receive(consumer)).dead_letter("bad")
        dlq = bus.dead_letter_queue(topic, "g")
        await eventually(lambda: _has(dlq, 5), "five dead letters")
        for _ in range(3):
            assert [d.message.id for d in await dlq.list()] == [m.id for m in sent]
        assert [d.message.id for d in await dlq.list(limit=2)] == [m.id for m in sent[:2]]
        assert await dlq.purge([sent[0].id, "unknown"]) == 1
        assert await dlq.replay(limit=2) == 2
        assert [d.message.id for d in await dlq.list()] == [m.id for m in sent[3:]]
        replayed = [await receive(consumer), await receive(consumer)]
        assert [d.message.id for d in replayed] == [m.id for m in sent[1:3]]
        assert all(d.attempt == 1 for d in replayed)
        for delivery in replayed:
            await delivery.ack()


async def _has(dlq: unibus.DeadLetterQueue, count: int) -> bool:
    return len(await dlq.list()) == count


async def test_replay_of_one_groups_dead_letters_reaches_only_that_group(topic: str) -> None:
    async with opened() as bus:
        billing = await bus.consumer(topic, group="billing")
        audit = await bus.consumer(topic, group="audit")
        sent = unibus.Message(body=b"once")
        await bus.publish(topic, sent)
        await (await receive(audit)).ack()
        await (await receive(billing)).dead_letter("card declined")
        dlq = bus.dead_letter_queue(topic, "billing")
        await eventually(lambda: _has(dlq, 1), "the dead letter")
        assert await dlq.replay() == 1
        again = await receive(billing)
        assert again.message.id == sent.id
        await again.ack()
        with pytest.raises(unibus.OperationTimeoutError):
            await audit.receive(timeout=1.0)


# -- queue features -------------------------------------------------------------------------


async def test_single_active_consumer_keeps_order_across_members(topic: str) -> None:
    async with opened(single_active_consumer=True) as bus:
        first = await bus.consumer(topic, group="g", prefetch=1)
        second = await bus.consumer(topic, group="g", prefetch=1)
        sent = [unibus.Message(body=f"{i}".encode()) for i in range(10)]
        await bus.publish_many(topic, sent[:5])
        got = []
        for _ in range(5):
            delivery = await receive(first)
            got.append(delivery.message.id)
            await delivery.ack()
        with pytest.raises(unibus.OperationTimeoutError):
            await second.receive(timeout=0.5)
        await first.close()
        await bus.publish_many(topic, sent[5:])
        for _ in range(5):
            delivery = await receive(second)
            got.append(delivery.message.id)
            await delivery.ack()
        assert got == [m.id for m in sent]


async def test_priority_queues_deliver_urgent_messages_first(topic: str) -> None:
    async with opened(queue_type="classic", max_priority=9) as bus:
        await bus.provision(TopicSpec(name=topic, groups=("g",)))
        low = [unibus.Message(body=b"low", headers={"unibus-priority": "1"}) for _ in range(3)]
        high = unibus.Message(body=b"high", headers={"unibus-priority": "9"})
        for message in [*low, high]:
            await bus.publish(topic, message)
        consumer = await bus.consumer(topic, group="g", prefetch=1)
        first = await receive(consumer)
        assert first.message.id == high.id
        assert first.message.headers["unibus-priority"] == "9"
        await first.ack()


async def test_expired_messages_are_dead_lettered_by_the_broker(topic: str) -> None:
    async with opened() as bus:
        await bus.provision(TopicSpec(name=topic, groups=("g",)))
        sent = unibus.Message(body=b"stale soon", headers={"unibus-ttl": "0.1"})
        await bus.publish(topic, sent)
        dlq = bus.dead_letter_queue(topic, "g")
        [dead] = await eventually(dlq.list, "the expired message")
        assert dead.message.id == sent.id
        assert dead.reason == "rabbitmq: expired"


async def test_full_queue_rejects_publishes_with_reject_publish(topic: str) -> None:
    async with opened(queue_type="classic", max_length=2, overflow="reject-publish") as bus:
        await bus.provision(TopicSpec(name=topic, groups=("g",)))
        await bus.publish_many(topic, [unibus.Message(body=b"1"), unibus.Message(body=b"2")])
        with pytest.raises(unibus.PublishError):
            await bus.publish(topic, unibus.Message(body=b"3"))
        # In one window, the broker nacks exactly those beyond the limit.
        await bus.provision(TopicSpec(name=f"{topic}-many", groups=("g",)))
        sent = [unibus.Message(body=f"{i}".encode()) for i in range(5)]
        with pytest.raises(unibus.PublishError, match="refused") as caught:
            await bus.publish_many(f"{topic}-many", sent)
        assert [r.message_id for r in caught.value.receipts] == [m.id for m in sent[:2]]


async def test_full_queue_dead_letters_its_oldest_with_drop_head(topic: str) -> None:
    async with opened(max_length=2) as bus:
        await bus.provision(TopicSpec(name=topic, groups=("g",)))
        sent = [unibus.Message(body=f"{i}".encode()) for i in range(3)]
        for message in sent:
            await bus.publish(topic, message)
        dlq = bus.dead_letter_queue(topic, "g")
        [dead] = await eventually(dlq.list, "the dropped message")
        assert dead.message.id == sent[0].id
        assert dead.reason == "rabbitmq: maxlen"


async def test_prefetch_bounds_unsettled_deliveries_per_member(topic: str) -> None:
    async with opened() as bus:
        greedy = await bus.consumer(topic, group="g", prefetch=2)
        other = await bus.consumer(topic, group="g", prefetch=100)
        await bus.publish_many(topic, [unibus.Message(body=f"{i}".encode()) for i in range(10)])
        held = [await receive(greedy), await receive(greedy)]
        rest = []
        while len(rest) < 8:
            delivery = await receive(other)
            rest.append(delivery)
            await delivery.ack()
        with pytest.raises(unibus.OperationTimeoutError):
            await greedy.receive(timeout=0.3)
        for delivery in held:
            await delivery.ack()


async def test_oversized_message_is_a_typed_error_before_sending(topic: str) -> None:
    async with opened(max_message_size=1024) as bus:
        with pytest.raises(unibus.MessageTooLargeError, match="1024"):
            await bus.publish(topic, unibus.Message(body=b"x" * 2048))


async def test_close_hands_back_buffered_messages_and_keeps_acks(topic: str) -> None:
    async with opened() as bus:
        consumer = await bus.consumer(topic, group="g", prefetch=10)
        sent = [unibus.Message(body=f"{i}".encode()) for i in range(10)]
        await bus.publish_many(topic, sent)
        taken = [await receive(consumer) for _ in range(3)]
        for delivery in taken:
            await delivery.ack()
        await consumer.close()
        successor = await bus.consumer(topic, group="g")
        rest = []
        while len(rest) < 7:
            delivery = await receive(successor)
            rest.append(delivery.message.id)
            await delivery.ack()
        assert sorted(rest) == sorted(m.id for m in sent[3:])
        with pytest.raises(unibus.OperationTimeoutError):
            await successor.receive(timeout=1.0)


async def test_wrong_credentials_are_a_connection_error() -> None:
    bus = unibus.connect("amqp://guest:wrong@127.0.0.1:5672/")
    with pytest.raises(unibus.ConnectionFailedError):
        await bus.open()


async def test_replay_sends_a_message_dead_lettered_twice_once(topic: str) -> None:
    async with opened() as bus:
        consumer = await bus.consumer(topic, group="g")
        sent = unibus.Message(body=b"dead-lettered again after a lost ack")
        await bus.publish(topic, sent)
        await bus.publish(topic, sent)  # the broker's redelivery of it, as far as ids go
        for _ in range(2):
            await (await receive(consumer)).dead_letter("bad")
        dlq = bus.dead_letter_queue(topic, "g")
        await eventually(lambda: _has(dlq, 2), "both copies")
        assert await dlq.replay() == 1
        assert await dlq.list() == []
        replayed = await receive(consumer)
        assert replayed.message.id == sent.id
        await replayed.ack()
        with pytest.raises(unibus.OperationTimeoutError):
            await consumer.receive(timeout=1.0)


# -- a retry queue that confirms nothing ----------------------------------------------------


async def _restart_killed() -> None:
    from unibus.devstack import DevStack

    stack = DevStack()
    port = stack.spec("rabbitmq").ports["amqp"]
    if f":{port}/" not in URL:
        pytest.fail(f"{URL} is not the launcher's RabbitMQ (port {port}): set UNIBUS_DEV_HOME "
                    "and UNIBUS_DEV_PORTS for the broker the tests use")
    await asyncio.to_thread(stack.restart, "rabbitmq", kill=True)


async def _answers(queue: str) -> bool:
    """Whether the (empty) queue answers a basic.get; one without a leader does not."""
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        await declared.get(fail=False, timeout=3)
    except TimeoutError:
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 5)
    return True


async def test_a_retry_queue_that_confirms_nothing_is_passed_over(
    topic: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """RabbitMQ 3.10 can come back from a crash with a quorum queue that has no leader when
    the queue was declared a moment before: it takes publishes and confirms none. Retries
    meant for it must still reach the dead-letter queue, and everything else must flow."""
    queue = Names.queue(topic, "g")
    retry = Names.retry(queue, 200)
    async with opened() as bus:
        await bus.provision(TopicSpec(name=topic, groups=("g",), max_attempts=3))
    async with raw_channel() as channel:
        await channel.declare_queue(retry, durable=True, arguments={
            "x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish", "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue, "x-expires": 600_200})
    await _restart_killed()  # a moment after the declaration
    leaderless = not await _answers(retry)

    done: list[str] = []

    async def handler(message: unibus.Message) -> None:
        if message.headers.get("poison") == "1":
            raise ConnectionError("payment gateway down")
        done.append(message.id)

    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff((0.2,)))
    try:
        with caplog.at_level(logging.WARNING, logger="unibus"):
            async with opened(publish_timeout=2.0) as bus:
                sub = await bus.subscribe(topic, handler, group="g", policy=policy,
                                          concurrency=4)
                messages = [unibus.Message(body=b"order", headers={"poison": str(int(i < 2))})
                            for i in range(40)]
                await bus.publish_many(topic, messages)
                dlq = bus.dead_letter_queue(topic, "g")

                async def settled() -> list[unibus.DeadLetter] | None:
                    dead = await dlq.list()
                    return dead if len(dead) == 2 and len(done) == 38 else None

                dead = await eventually(settled, "every message processed or dead-lettered")
                await sub.stop()
        assert sorted(done) == sorted(m.id for m in messages[2:])
        assert {d.message.id for d in dead} == {m.id for m in messages[:2]}
        assert all(d.attempts == 3 for d in dead)
        if leaderless:
            assert f"retry queue {retry!r} confirmed no publish" in caplog.text
            assert "publishing on a new channel" in caplog.text
    finally:
        with contextlib.suppress(Exception):
            async with raw_channel() as channel:
                await channel.queue_delete(retry, timeout=20)
