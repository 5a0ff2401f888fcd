"""Exactly-once consume-transform-produce: a worker killed between produce and commit."""

from __future__ import annotations

import uuid

import kafka_support
import pytest

import unibus

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def _causes(records: list[object]) -> list[str]:
    out = []
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}  # type: ignore[attr-defined]
        out.append(headers["ce_causationid"])
    return out


async def test_a_kill_between_produce_and_commit_shows_no_duplicate_to_read_committed() -> None:
    source, sink = (f"kt-eos-{part}-{uuid.uuid4().hex[:8]}" for part in ("in", "out"))
    kafka_support.CREATED.extend([source, sink])
    group, txid = f"g-eos-{uuid.uuid4().hex[:6]}", f"tx-eos-{uuid.uuid4().hex[:6]}"
    inputs = [unibus.Message(body=f"order-{i}".encode(), key="same") for i in range(5)]
    async with unibus.connect(kafka_support.URL) as bus:
        await bus.provision(sink)
        await bus.publish_many(source, inputs)

    # Two messages are processed and committed; the third is published inside its
    # transaction and the worker is SIGKILLed before the transaction commits.
    async with kafka_support.worker("eos", kafka_support.URL, source, sink, group, txid,
                                    "3") as (_process, line):
        assert line == f"produced {inputs[2].id}"

    # A successor with the same transactional id fences the dead one (its open transaction
    # is aborted) and resumes from the committed offsets.
    async with unibus.connect(kafka_support.URL, exactly_once=True, transactional_id=txid,
                              **FAST_GROUP) as bus:
        consumer = await bus.consumer(source, group=group)
        for expected in inputs[2:]:
            delivery = await consumer.receive(timeout=60)
            assert delivery.message.id == expected.id
            async with consumer.transaction() as tx:  # type: ignore[attr-defined]
                await tx.publish(sink, unibus.Message(body=delivery.message.body.upper(),
                                                      key=delivery.message.key,
                                                      causation_id=delivery.message.id))
                await tx.ack(delivery)

    committed = _causes(await kafka_support.read_topic(sink, isolation_level="read_committed"))
    assert committed == [m.id for m in inputs], "each input's output exactly once, in order"
    everything = _causes(await kafka_support.read_topic(sink))
    assert everything.count(inputs[2].id) == 2, \
        "the killed worker's output is in the log, aborted, and only read_uncommitted sees it"


async def test_transactions_are_refused_without_exactly_once() -> None:
    topic = f"kt-notx-{uuid.uuid4().hex[:8]}"
    kafka_support.CREATED.append(topic)
    async with unibus.connect(kafka_support.URL) as bus:
        consumer = await bus.consumer(topic, group="g")
        with pytest.raises(unibus.CapabilityError, match="exactly_once"):
            async with consumer.transaction():  # type: ignore[attr-defined]
                pass


async def test_out_of_order_acks_are_refused_inside_a_transaction() -> None:
    topic = f"kt-txorder-{uuid.uuid4().hex[:8]}"
    kafka_support.CREATED.append(topic)
    async with unibus.connect(kafka_support.URL, exactly_once=True) as bus:
        consumer = await bus.consumer(topic, group="g", start="earliest")
        await bus.publish_many(topic, [unibus.Message(body=b"a", key="k"),
                                       unibus.Message(body=b"b", key="k")])
        first = await consumer.receive(timeout=30)
        second = await consumer.receive(timeout=30)
        with pytest.raises(unibus.SettlementError, match="in order"):
            async with consumer.transaction() as tx:  # type: ignore[attr-defined]
                await tx.ack(second)
        assert not second.settled
        async with consumer.transaction() as tx:  # type: ignore[attr-defined]
            await tx.ack(first)
            await tx.ack(second)
        assert first.settled
        assert second.settled
