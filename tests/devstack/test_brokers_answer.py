"""Each launched broker answers a real round trip with its own raw Python client."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from unibus.devstack import DevStack

pytestmark = pytest.mark.timeout(180)


async def require(name: str) -> None:
    """Fail (never skip) unless the broker answers; tolerate a restart already under way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:
        [status] = await asyncio.to_thread(DevStack().status, [name])
        if status.state in ("running", "external"):
            return
        if status.state == "stopped" or loop.time() > deadline:
            pytest.fail(f"{name} is {status.state}; start it with `unibus dev up {name}`")
        await asyncio.sleep(1)  # a restart by another test is finishing


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_rabbitmq_round_trip() -> None:
    await require("rabbitmq")
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique("smoke"), exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hello"), queue.name)
        message = await queue.get(timeout=10)
        await message.ack()
        assert message.body == b"hello"


async def test_rabbitmq_quorum_queue_round_trip() -> None:
    await require("rabbitmq")
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique("smoke-quorum"), durable=True,
                                            arguments={"x-queue-type": "quorum"})
        try:
            await channel.default_exchange.publish(aio_pika.Message(b"hello"), queue.name)
            message = await queue.get(timeout=10)
            await message.ack()
            assert message.body == b"hello"
        finally:
            await queue.delete(if_unused=False, if_empty=False)


async def test_nats_jetstream_round_trip() -> None:
    await require("nats")
    import nats

    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = client.jetstream()
        stream = unique("SMOKE").replace("-", "_")
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.a", b"hello")
        assert ack.seq == 1
        sub = await js.pull_subscribe(f"{stream}.a", durable="d")
        [msg] = await sub.fetch(1, timeout=10)
        await msg.ack()
        assert msg.data == b"hello"
        await js.delete_stream(stream)
    finally:
        await client.close()


async def test_kafka_idempotent_producer_and_transactions() -> None:
    await require("kafka")
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = unique("smoke")
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    idempotent = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9092", enable_idempotence=True)
    await idempotent.start()
    await idempotent.send_and_wait(topic, b"plain")
    await idempotent.stop()
    tx = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9092", transactional_id=unique("tx"))
    await tx.start()
    async with tx.transaction():
        await tx.send(topic, b"committed")
    await tx.begin_transaction()
    await tx.send(topic, b"aborted")
    await tx.abort_transaction()
    await tx.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers="127.0.0.1:9092",
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(seen) < 2 and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            seen += [r.value for records in batches.values() for r in records]
        assert seen == [b"plain", b"committed"]
    finally:
        await consumer.stop()


async def test_pulsar_round_trip() -> None:
    await require("pulsar")
    import pulsar

    def round_trip() -> bytes:
        client = pulsar.Client("pulsar://127.0.0.1:6650", logger=pulsar.ConsoleLogger(
            pulsar.LoggerLevel.Error))
        try:
            topic = f"persistent://public/default/{unique('smoke')}"
            consumer = client.subscribe(topic, "smoke")
            producer = client.create_producer(topic)
            producer.send(b"hello")
            message = consumer.receive(timeout_millis=20000)
            consumer.acknowledge(message)
            return bytes(message.data())
        finally:
            client.close()

    assert await asyncio.to_thread(round_trip) == b"hello"


async def test_pulsar_runs_without_the_transaction_coordinator() -> None:
    """No Python client can open a transaction, and with the coordinator on a restarted broker
    holds back dispatch on every topic it preloads (docs/design/devstack.md)."""
    await require("pulsar")
    import json
    import urllib.request

    url = "http://127.0.0.1:8080/admin/v2/brokers/configuration/runtime"

    def setting() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(json.load(response)["transactionCoordinatorEnabled"])

    assert await asyncio.to_thread(setting) == "false"


@pytest.mark.parametrize("port", [9324, 4566], ids=["elasticmq", "moto"])
async def test_sqs_round_trip(port: int) -> None:
    await require("elasticmq" if port == 9324 else "moto")
    import aioboto3

    session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                               region_name="us-east-1")
    async with session.client("sqs", endpoint_url=f"http://127.0.0.1:{port}") as sqs:
        url = (await sqs.create_queue(QueueName=unique("smoke")))["QueueUrl"]
        await sqs.send_message(QueueUrl=url, MessageBody="hello")
        got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
        [message] = got["Messages"]
        await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        await sqs.delete_queue(QueueUrl=url)
        assert message["Body"] == "hello"


async def test_redis_round_trip() -> None:
    await require("redis")
    import redis.asyncio as redis

    client = redis.from_url(DevStack().spec("redis").url)
    try:
        key = unique("smoke")
        await client.set(key, b"hello", px=60_000)
        assert await client.get(key) == b"hello"
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        await client.aclose()


async def test_postgres_round_trip() -> None:
    await require("postgres")
    import asyncpg

    conn = await asyncpg.connect(DevStack().spec("postgres").url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "unibus"
        table = unique("smoke").replace("-", "_")
        async with conn.transaction():
            await conn.execute(f"CREATE TEMP TABLE {table} (v TEXT)")
            await conn.execute(f"INSERT INTO {table} VALUES ('hello')")
        assert await conn.fetchval(f"SELECT v FROM {table}") == "hello"
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
    finally:
        await conn.close()
