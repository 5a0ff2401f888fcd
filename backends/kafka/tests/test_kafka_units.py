"""Options, capabilities, names and codecs of the Kafka backend (no broker needed)."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.structs import ConsumerRecord  # type: ignore[import-untyped]
from unibus_kafka import KafkaBackend, KafkaOptions
from unibus_kafka._client import bootstrap_servers, connection_settings
from unibus_kafka._codec import (
    ATTEMPT,
    RETRY_DUE,
    decode,
    encode_headers,
    record_headers,
    retry_headers,
)
from unibus_kafka._consumer import KafkaConsumer
from unibus_kafka._delivery import KafkaDelivery, RecordRef
from unibus_kafka._offsets import PartitionOffsets
from unibus_kafka._topology import dlq_topic, retry_topic

import unibus
from unibus.base import BaseDelivery
from unibus.capabilities import DeliveryGuarantee
from unibus.message import Message
from unibus.positions import Position


def test_producer_defaults_are_the_safe_ones() -> None:
    options = KafkaOptions()
    assert options.acks == "all"
    assert options.idempotent
    assert options.compression == "lz4"
    assert options.isolation == "read_uncommitted"
    assert KafkaOptions(exactly_once=True).isolation == "read_committed"


def test_options_from_the_url_query() -> None:
    options = KafkaBackend.parse_options(
        "kafka://127.0.0.1:9092?acks=1&idempotent=false&compression=gzip&retry_tiers=2,20"
    )
    assert isinstance(options, KafkaOptions)
    assert options.acks == "1"
    assert options.compression == "gzip"
    assert options.retry_tiers == (2.0, 20.0)


@pytest.mark.parametrize("bad", [
    {"acks": "1"},  # idempotence needs acks=all
    {"compression": "brotli"},
    {"retry_tiers": "0,5"},
    {"exactly_once": True, "isolation_level": "read_uncommitted"},
    {"partitions": 0},
])
def test_inconsistent_options_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(unibus.ConfigError):
        unibus.connect("kafka://127.0.0.1:9092", **bad)


def test_exactly_once_is_declared_only_when_configured() -> None:
    plain = KafkaBackend.declare(KafkaOptions())
    assert DeliveryGuarantee.EXACTLY_ONCE not in plain.delivery
    assert not plain.transactions
    eos = KafkaBackend.declare(KafkaOptions(exactly_once=True))
    assert DeliveryGuarantee.EXACTLY_ONCE in eos.delivery
    assert eos.transactions
    with pytest.raises(unibus.CapabilityError, match="exactly_once"):
        unibus.connect("kafka://127.0.0.1:9092", requirements={"delivery": "exactly_once"})
    unibus.connect("kafka://127.0.0.1:9092", exactly_once=True,
                   requirements={"delivery": "exactly_once", "transactions": True})


def test_every_limitation_has_a_reason() -> None:
    caps = KafkaBackend.declare(KafkaOptions())
    for dimension in ("dead_letter", "delayed_delivery", "ttl", "priority", "transactions",
                      "wildcard_subscriptions", "deduplication", "delivery", "retention"):
        assert caps.reasons.get(dimension), dimension
    assert not caps.native_dead_letter
    assert caps.max_delay is None


def test_bootstrap_servers_from_the_url() -> None:
    parts = urllib.parse.urlsplit("kafka://user:secret@h1:9092,h2:9093,h3")
    assert bootstrap_servers(parts) == ["h1:9092", "h2:9093", "h3:9092"]


def test_tls_and_sasl_follow_scheme_and_credentials() -> None:
    settings = connection_settings(urllib.parse.urlsplit("kafka://127.0.0.1:9092"),
                                   KafkaOptions())
    assert settings["security_protocol"] == "PLAINTEXT"
    settings = connection_settings(urllib.parse.urlsplit("kafka+ssl://u:p%40ss@h:9093"),
                                   KafkaOptions(sasl_mechanism="SCRAM-SHA-512"))
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["sasl_plain_password"] == "p@ss"
    assert "ssl_context" in settings
    with pytest.raises(unibus.ConfigError, match="SASL"):
        connection_settings(urllib.parse.urlsplit("kafka://h:9092"),
                            KafkaOptions(sasl_mechanism="PLAIN"))


def test_dead_letter_and_retry_topic_names() -> None:
    assert dlq_topic("orders") == "orders.dlq"
    assert retry_topic("orders", "billing", 10.0) == "orders.retry.billing.10s"
    assert retry_topic("orders", "billing", 0.5) == "orders.retry.billing.0_5s"
    odd = retry_topic("orders", "team a/billing", 1.0)
    assert odd.startswith("orders.retry.team_a_billing-")
    assert odd.endswith(".1s")
    assert len(retry_topic("o" * 240, "g" * 200, 60.0)) <= 249


class _Record:
    def __init__(self, value: bytes | None, key: bytes | None,
                 headers: list[tuple[str, bytes]]) -> None:
        self.value, self.key, self.headers = value, key, headers
        self.topic, self.partition, self.offset = "t", 0, 0


def test_records_carry_the_whole_envelope_and_hide_retry_bookkeeping() -> None:
    sent = Message(body=b"x", key="k-1", headers={"tenant": "acme"}, type="orders.placed",
                   correlation_id="c1", aggregate_version=3)
    headers = encode_headers({**sent.wire_headers(), ATTEMPT: "2", RETRY_DUE: "1"})
    record = _Record(sent.body, b"k-1", headers)
    got = decode(record, {n: v.decode() for n, v in headers})
    assert got == sent


def test_retry_headers_carry_the_origin_only_when_there_is_one() -> None:
    sent = Message(body=b"x", key="k-1", headers={"tenant": "acme"})
    nacked = retry_headers(sent, topic="orders", attempt=3, due_ms=1234,
                           origin=Position("orders", 41, 2))
    assert nacked == {**sent.wire_headers(), "unibus-attempt": "3",
                      "unibus-retry-due": "1234", "unibus-retry-topic": "orders",
                      "unibus-retry-partition": "2", "unibus-retry-offset": "41"}
    replayed = retry_headers(sent, topic="orders", attempt=1, due_ms=0)
    assert replayed == {**sent.wire_headers(), "unibus-attempt": "1",
                        "unibus-retry-due": "0", "unibus-retry-topic": "orders"}
    record = _Record(sent.body, b"k-1", encode_headers(nacked))
    assert decode(record, record_headers(record)) == sent


def test_a_non_unibus_record_gets_an_id_and_binary_headers_survive() -> None:
    record = _Record(None, None, [("raw", b"\xff\xfe")])
    headers = record_headers(record)
    message = decode(record, headers)
    assert message.body == b""
    assert message.id
    assert "raw" in message.headers


def test_a_delivery_decodes_its_record_on_first_use() -> None:
    sent = Message(body=b"payload", key="k", headers={"trace": "t1"}, subject="s-1")
    record = ConsumerRecord("orders", 2, 41, 0, 0, b"k", sent.body, None, 1, 7,
                            tuple(encode_headers(sent.wire_headers())))

    class Consumer:  # what BaseDelivery reads of its consumer
        group = "g"

    part = PartitionOffsets(41, tp=TopicPartition("orders", 2), epoch=1)
    delivery = KafkaDelivery(Consumer(), record, "orders", 1, part, 41)  # type: ignore[arg-type]
    assert delivery.message == sent
    assert delivery.message is delivery.message, "decoded once"
    assert delivery.position == Position("orders", 41, 2)
    assert delivery.raw == RecordRef(TopicPartition("orders", 2), 41, 1)
    assert (delivery.group, delivery.attempt, delivery.settled) == ("g", 1, False)
    retry_part = PartitionOffsets(5, tp=TopicPartition("orders.retry", 0), epoch=1)
    retried = KafkaDelivery(Consumer(), record, "orders", 3,  # type: ignore[arg-type]
                            retry_part, 5, sent, Position("orders", 41, 2))
    assert retried.message is sent
    assert retried.position == Position("orders", 41, 2)
    assert retried.raw == RecordRef(TopicPartition("orders.retry", 0), 5, 1)
    again = retried.again()
    assert (again.attempt, again.message, again.position) == (4, sent, retried.position)
    assert again.raw == retried.raw
    assert not again.settled


def test_delivery_sets_every_field_of_the_base_delivery() -> None:
    """KafkaDelivery calls BaseDelivery.__init__ positionally; ``raw``, a property over
    the base's slot, still reads (the RecordRef is built when first read)."""
    class Consumer:
        group = "g"

    part = PartitionOffsets(0, tp=("t", 3), epoch=7)
    delivery = KafkaDelivery(Consumer(), "record", "t", 2, part, 41)  # type: ignore[arg-type]
    for name in BaseDelivery.__slots__:
        getattr(delivery, name)  # AttributeError: not set
    assert (delivery.topic, delivery.attempt, delivery.group) == ("t", 2, "g")
    assert tuple(delivery.raw) == (("t", 3), 41, 7)
    assert not delivery.settled


async def test_stopping_ends_a_marker_whose_cancellation_was_lost() -> None:
    # Python 3.11's asyncio.wait_for returns the result when the cancellation arrives as
    # the awaited commit completes; the marker then must not wait for work forever.
    consumer = KafkaConsumer(KafkaBackend("kafka://127.0.0.1:1", KafkaOptions()), ["t"], "g",
                             start=None, prefetch=10, max_attempts=None)
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    marking = asyncio.Event()

    async def mark(tps: object) -> None:
        marking.set()
        await asyncio.wait_for(commit, 30)

    consumer._mark = mark  # type: ignore[method-assign]
    consumer._stage([], [TopicPartition("t", 0)])
    await asyncio.wait_for(marking.wait(), 10)
    commit.set_result(None)  # the commit lands in the same loop turn as the cancellation
    stopping = asyncio.create_task(consumer._stop_fetching())
    finished, _ = await asyncio.wait({stopping}, timeout=10)  # not wait_for: it cancels
    if not finished:
        assert consumer._marker is not None
        consumer._marker.cancel()  # let the test end
        await stopping
    assert finished, "a marker that missed its cancellation held _stop_fetching"
