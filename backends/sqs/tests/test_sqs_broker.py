"""SQS-specific behaviour against the real servers: native redrive, visibility extension,
attribute packing, batching, size and name limits, group modes and SNS subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3  # type: ignore[import-untyped]
import pytest
from sqs_support import (
    ELASTICMQ,
    ELASTICMQ_FIFO_URL,
    ELASTICMQ_URL,
    MOTO,
    MOTO_SNS_URL,
    TEST_OPTIONS,
)
from unibus_sqs._backend import SQSBackend

import unibus
from unibus import deadletter
from unibus.errors import OperationTimeoutError


def new_topic() -> str:
    return f"sq-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[unibus.Bus]:
    bus = await unibus.connect(url, **{**TEST_OPTIONS, **options})
    try:
        yield bus
    finally:
        await bus.close()


@contextlib.asynccontextmanager
async def raw_sqs(endpoint: str) -> AsyncIterator[Any]:
    session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                               region_name="us-east-1")
    async with session.client("sqs", endpoint_url=endpoint) as client:
        yield client


@contextlib.asynccontextmanager
async def cleanup(bus: unibus.Bus, *topics: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        backend = bus.backend
        assert isinstance(backend, SQSBackend)
        for topic in topics:
            await backend.delete_topic(topic)


async def receive_one(consumer: unibus.Consumer, timeout: float = 20.0) -> unibus.Delivery:
    return await consumer.receive(timeout=timeout)


async def test_native_redrive_moves_a_crash_looping_message(tmp_path: object) -> None:
    """maxReceiveCount = max_attempts: SQS itself moves a message nobody settles."""
    topic = new_topic()
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic):
        consumer = await bus.consumer(topic, group="g", max_attempts=2)
        await consumer.close()
        backend = bus.backend
        assert isinstance(backend, SQSBackend)
        t = backend.topology
        url = await t.queue_url(t.names.topic_queue(topic), create=False)
        dlq_url = await t.dead_letter_url(topic, "g", create=False)
        async with raw_sqs(ELASTICMQ) as sqs:
            attrs = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))
            policy = json.loads(attrs["Attributes"]["RedrivePolicy"])
            assert int(policy["maxReceiveCount"]) == 2
            assert policy["deadLetterTargetArn"] == await t.queue_arn(dlq_url)
            message = unibus.Message(body=b"crashes every consumer")
            await bus.publish(topic, message)
            # Two receives that never settle (as if the handler's process died each time).
            for _ in range(2):
                reply = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5,
                                                  VisibilityTimeout=1)
                [raw] = reply["Messages"]
                await sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=0)
            # The next receive finds it over the limit: SQS moves it to the DLQ.
            reply = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
            assert not reply.get("Messages")
        dlq = bus.dead_letter_queue(topic, "g")
        deadline = time.monotonic() + 20
        while not (dead := await dlq.list()):
            assert time.monotonic() < deadline, "SQS did not redrive the message"
            await asyncio.sleep(0.2)  # polling interval
        assert dead[0].message.id == message.id
        assert "maxReceiveCount" in dead[0].reason
        assert dead[0].attempts == 2, "delivered maxReceiveCount times before the move"


async def test_visibility_is_extended_for_a_slow_handler() -> None:
    topic = new_topic()
    async with opened(ELASTICMQ_URL, visibility_timeout=2) as bus, cleanup(bus, topic):
        slow = await bus.consumer(topic, group="g")
        await bus.publish(topic, unibus.Message(body=b"takes a while"))
        delivery = await receive_one(slow)
        # The second member starts once the first holds the message, or it could take it.
        other = await bus.consumer(topic, group="g")
        # Three visibility timeouts pass while the handler works: no duplicate appears.
        with pytest.raises(OperationTimeoutError):
            await other.receive(timeout=6.0)
        await delivery.ack()
        with pytest.raises(OperationTimeoutError):
            await other.receive(timeout=3.0)


async def test_many_headers_survive_the_ten_attribute_limit() -> None:
    topic = new_topic()
    headers = {f"header-{i}": f"value {i}" for i in range(25)} | {"empty": "", "sp ace": "x"}
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic):
        consumer = await bus.consumer(topic, group="g")
        sent = unibus.Message(body=b"{}", key="k", headers=headers, subject="s",
                              correlation_id="c", causation_id="d", schema_version="3")
        await bus.publish(topic, sent)
        delivery = await receive_one(consumer)
        await delivery.ack()
        assert delivery.message == sent


async def test_publish_many_batches_by_count_and_size() -> None:
    topic = new_topic()
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic):
        consumer = await bus.consumer(topic, group="g")
        # 25 x 60 KiB: batches must split on the 256 KiB request limit, not only on 10.
        messages = [unibus.Message(body=bytes([65 + i % 26]) * 60_000) for i in range(25)]
        receipts = await bus.publish_many(topic, messages)
        assert [r.message_id for r in receipts] == [m.id for m in messages]
        assert all(r.broker_id for r in receipts)
        got: dict[str, bytes] = {}
        while len(got) < 25:
            for delivery in await consumer.receive_batch(10, timeout=20):
                got[delivery.message.id] = delivery.message.body
                await delivery.ack()
        assert got == {m.id: m.body for m in messages}


async def test_limits_are_typed_errors() -> None:
    topic = new_topic()
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic):
        with pytest.raises(unibus.CapabilityError, match="15 minutes"):
            await bus.publish(topic, b"x", delay=901)
        with pytest.raises(unibus.MessageTooLargeError, match="262144"):
            await bus.publish(topic, bytes([0xFF]) * 200_000)  # base64 grows it past 256 KiB
        with pytest.raises(unibus.ConfigError, match=r"\.fifo"):
            await bus.publish("orders.fifo", b"x")
        with pytest.raises(unibus.ConfigError, match="letters"):
            await bus.publish("orders/placed", b"x")
    async with opened(ELASTICMQ_FIFO_URL) as bus:
        with pytest.raises(unibus.CapabilityError, match="FIFO"):
            await bus.publish(topic, b"x", delay=1)


async def test_queue_mode_serves_one_group_per_topic() -> None:
    topic = new_topic()
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic):
        await bus.consumer(topic, group="billing")
        with pytest.raises(unibus.CapabilityError, match="billing"):
            await bus.consumer(topic, group="audit")
        with pytest.raises(unibus.CapabilityError, match="SNS"):
            await bus.consumer(topic)
        await bus.consumer(topic, group="billing")  # more members of the same group are fine


async def test_unknown_topic_without_auto_create_for_consumers() -> None:
    async with opened(ELASTICMQ_URL, auto_create=False) as bus:
        topic = new_topic()
        with pytest.raises(unibus.TopicNotFoundError, match=topic):
            await bus.consumer(topic, group="g")


async def test_long_fifo_names_are_shortened_stably() -> None:
    topic = "t" * 70  # with the group and '-dlq.fifo' far past 80 characters
    async with opened(ELASTICMQ_FIFO_URL) as bus, cleanup(bus, topic):
        consumer = await bus.consumer(topic, group="g" * 40)
        first, second = (unibus.Message(body=f"{i}".encode(), key="k") for i in range(2))
        await bus.publish_many(topic, [first, second])
        got = []
        for _ in range(2):  # FIFO: the key's next message comes once this one is settled
            delivery = await receive_one(consumer)
            await delivery.ack()
            got.append(delivery.message.id)
        assert got == [first.id, second.id]
        await bus.publish(topic, first)  # same id within 5 minutes: deduplicated
        with pytest.raises(OperationTimeoutError):
            await consumer.receive(timeout=2.0)


async def test_sns_mode_subscribes_group_queues_with_raw_delivery() -> None:
    topic = new_topic()
    async with opened(MOTO_SNS_URL) as bus, cleanup(bus, topic):
        backend = bus.backend
        assert isinstance(backend, SQSBackend)
        await bus.consumer(topic, group="billing")
        private = await bus.consumer(topic)
        arn = await backend.topology.topic_arn(topic, create=False)
        sns = backend.clients.sns
        subs = (await sns.list_subscriptions_by_topic(TopicArn=arn))["Subscriptions"]
        assert len(subs) == 2
        for sub in subs:
            attrs = (await sns.get_subscription_attributes(
                SubscriptionArn=sub["SubscriptionArn"]))["Attributes"]
            assert attrs["RawMessageDelivery"] == "true"
        await private.close()
        subs = (await sns.list_subscriptions_by_topic(TopicArn=arn))["Subscriptions"]
        assert len(subs) == 1, "a private consumer's queue and subscription go at close"
        async with raw_sqs(MOTO) as sqs:
            names = [u.rsplit("/", 1)[-1] for u in
                     (await sqs.list_queues(QueueNamePrefix=topic)).get("QueueUrls", [])]
        assert not [n for n in names if "--p-" in n]


async def _dead_letter_two(bus: unibus.Bus, topic: str, group: str) -> list[unibus.Message]:
    consumer = await bus.consumer(topic, group=group)
    messages = [unibus.Message(body=f"bad{i}".encode()) for i in range(2)]
    await bus.publish_many(topic, messages)
    for _ in messages:
        await (await receive_one(consumer)).dead_letter("broken")
    await consumer.close()
    return messages


async def test_native_redrive_moves_dead_letters_back_on_elasticmq() -> None:
    """StartMessageMoveTask, where the server has it: everything goes back, as it was."""
    topic = new_topic()
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic):
        messages = await _dead_letter_two(bus, topic, "g")
        dlq = bus.dead_letter_queue(topic, "g")
        assert await dlq.redrive() == 2  # type: ignore[attr-defined]
        assert await dlq.list() == []
        consumer = await bus.consumer(topic, group="g")
        got = [await receive_one(consumer) for _ in messages]
        for delivery in got:
            await delivery.ack()
        assert sorted(d.message.id for d in got) == sorted(m.id for m in messages)


async def test_native_redrive_is_refused_where_the_server_lacks_it_sns_moto() -> None:
    topic = new_topic()
    async with opened(MOTO_SNS_URL) as bus, cleanup(bus, topic):
        messages = await _dead_letter_two(bus, topic, "g")
        dlq = bus.dead_letter_queue(topic, "g")
        with pytest.raises(unibus.CapabilityError, match="replay"):
            await dlq.redrive()  # type: ignore[attr-defined]
        assert await dlq.replay() == 2  # the portable way works
        consumer = await bus.consumer(topic, group="g")
        got = [await receive_one(consumer) for _ in messages]
        assert {d.message.headers["unibus-replay-count"] for d in got} == {"1"}


# -- the envelope's wire form: defaults stay off the wire (docs/design/sqs-envelope.md) ------

async def _topic_queue_url(bus: unibus.Bus, topic: str) -> str:
    backend = bus.backend
    assert isinstance(backend, SQSBackend)
    t = backend.topology
    return await t.queue_url(t.names.topic_queue(topic), create=False, topic=topic)


async def test_default_envelope_is_two_attributes_and_the_old_form_still_decodes() -> None:
    topic = new_topic()
    async with opened(ELASTICMQ_URL) as bus, cleanup(bus, topic), raw_sqs(ELASTICMQ) as sqs:
        await bus.provision(topic, groups=("g",))
        url = await _topic_queue_url(bus, topic)
        # What a consumer that is not unibus sees of a default message: ce_id and ce_time.
        sent = unibus.Message(body=b"new form", headers={"tenant": "acme"})
        await bus.publish(topic, sent)
        reply = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5,
                                          MessageAttributeNames=["All"])
        [raw] = reply["Messages"]
        assert set(raw["MessageAttributes"]) == {"ce_id", "ce_time", "tenant"}
        await sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"],
                                            VisibilityTimeout=0)
        consumer = await bus.consumer(topic, group="g")
        delivery = await receive_one(consumer)
        await delivery.ack()
        assert delivery.message == sent
        # Written the old way, every envelope attribute present: decoded the same.
        old = unibus.Message(body=b"old form", key="k", headers={"tenant": "acme"})
        attributes = {**old.wire_headers(), "unibus-key": "k"}
        await sqs.send_message(QueueUrl=url, MessageBody="old form", MessageAttributes={
            n: {"DataType": "String", "StringValue": v} for n, v in attributes.items()})
        delivery = await receive_one(consumer)
        await delivery.ack()
        assert delivery.message == old
        # Not from unibus (no ce_id): a fresh id, the defaults, its attributes as headers.
        await sqs.send_message(QueueUrl=url, MessageBody="foreign", MessageAttributes={
            "origin": {"DataType": "String", "StringValue": "lambda"}})
        delivery = await receive_one(consumer)
        await delivery.ack()
        got = delivery.message
        assert (got.body, got.headers) == (b"foreign", {"origin": "lambda"})
        assert (got.type, got.source) == (unibus.Message().type, unibus.Message().source)


async def test_sns_fan_out_carries_the_whole_envelope() -> None:
    topic = new_topic()
    async with opened(MOTO_SNS_URL) as bus, cleanup(bus, topic):
        billing = await bus.consumer(topic, group="billing")
        audit = await bus.consumer(topic, group="audit")
        plain = unibus.Message(body=b"defaults", key="k", headers={"tenant": "acme"})
        custom = unibus.Message(body=b"custom", type="orders.placed", source="shop",
                                subject="o/1", correlation_id="c")
        await bus.publish(topic, plain)
        await bus.publish_many(topic, [custom])
        for consumer in (billing, audit):
            got = {}
            for _ in range(2):
                delivery = await receive_one(consumer)
                await delivery.ack()
                got[delivery.message.id] = delivery.message
            assert got == {plain.id: plain, custom.id: custom}


@pytest.mark.parametrize("url", [ELASTICMQ_URL, MOTO_SNS_URL], ids=["queue", "sns"])
async def test_dead_letter_and_replay_keep_the_default_envelope(url: str) -> None:
    topic = new_topic()
    async with opened(url) as bus, cleanup(bus, topic):
        consumer = await bus.consumer(topic, group="g")
        sent = unibus.Message(body=b"poison", key="k", headers={"tenant": "acme"})
        await bus.publish(topic, sent)
        await (await receive_one(consumer)).dead_letter("broken")
        dlq = bus.dead_letter_queue(topic, "g")
        deadline = time.monotonic() + 20
        while not (dead := await dlq.list()):
            assert time.monotonic() < deadline, "the dead letter did not arrive"
            await asyncio.sleep(0.2)  # polling the DLQ
        [letter] = dead
        assert letter.message.replace(headers=sent.headers) == sent
        assert letter.message.headers["tenant"] == "acme"
        assert letter.reason == "broken"
        assert await dlq.replay() == 1
        replayed = await receive_one(consumer)
        await replayed.ack()
        assert replayed.message.replace(headers=sent.headers) == sent
        assert replayed.message.headers[deadletter.REPLAY_COUNT] == "1"
