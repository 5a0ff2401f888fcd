"""Offline tests: options, the capability declaration, names, positions, error mapping."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import _pulsar  # type: ignore[import-not-found]
import httpx
import pulsar  # type: ignore[import-untyped]
import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]
import pytest
from unibus_pulsar import PulsarBackend, PulsarOptions
from unibus_pulsar._backend import client_logger
from unibus_pulsar._dead_letters import acknowledged
from unibus_pulsar._delivery import PulsarDelivery
from unibus_pulsar._errors import boundary
from unibus_pulsar._names import Names, decode_position, encode_position

import unibus
from unibus.base import BaseDelivery
from unibus.capabilities import Ordering
from unibus.positions import Position


def backend(url: str = "pulsar://127.0.0.1:6650", **options: object) -> PulsarBackend:
    opts = PulsarBackend.parse_options(url, options)
    assert isinstance(opts, PulsarOptions)
    return PulsarBackend(url, opts)


# -- options --------------------------------------------------------------------------------

def test_options_from_url_query_and_keywords() -> None:
    b = backend("pulsar://h:6650?tenant=acme&namespace=orders&compression=lz4"
                "&nack_redelivery_delay=250ms", batching="false")
    o = b.options
    assert (o.tenant, o.namespace, o.compression, o.batching) == ("acme", "orders", "lz4",
                                                                  False)
    assert o.nack_redelivery_delay == 0.25
    assert b.service_url == "pulsar://h:6650"
    assert b.admin_url == "http://h:8080"
    assert b.names.topic("t") == "persistent://acme/orders/t"


def test_ssl_url_and_token_in_the_url() -> None:
    b = backend("pulsar+ssl://:s3cret@broker.example:6651")
    assert b.service_url == "pulsar+ssl://broker.example:6651"
    assert b.admin_url == "https://broker.example:8443"
    assert b.options.auth_token == "s3cret"
    assert backend("pulsar://h:6650", admin_url="http://a:1").admin_url == "http://a:1"


@pytest.mark.parametrize("bad", [
    {"subscription_type": "round_robin"},
    {"compression": "brotli"},
    {"receiver_queue_size": 0},
    {"tenant": "a/b"},
    {"nack_redelivery_delay": "soon"},
    {"no_such_option": 1},
])
def test_bad_options_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(unibus.ConfigError):
        unibus.connect("pulsar://127.0.0.1:6650", **bad)


# -- capabilities ---------------------------------------------------------------------------

def test_shared_claims_no_order_and_says_which_mode_does() -> None:
    caps = backend().capabilities
    assert caps.ordering is Ordering.NONE
    assert all((caps.native_dead_letter, caps.replay, caps.consumer_groups, caps.fan_out))
    assert caps.max_delay is not None
    assert math.isinf(caps.max_delay)
    with pytest.raises(unibus.CapabilityError, match="key_shared"):
        unibus.connect("pulsar://127.0.0.1:6650", requirements={"ordering": "partition"})


def test_key_shared_and_failover_keep_order() -> None:
    assert backend(subscription_type="key_shared").capabilities.ordering is Ordering.PARTITION
    failover = backend(subscription_type="failover").capabilities
    assert failover.ordering is Ordering.PARTITION
    assert failover.max_delay is None
    assert "Shared" in failover.reason("delayed_delivery")


def test_exclusive_refuses_groups() -> None:
    caps = backend(subscription_type="exclusive").capabilities
    assert not caps.consumer_groups
    assert "single consumer" in caps.reason("consumer_groups")


def test_exactly_once_and_dedup_are_refused_with_reasons() -> None:
    with pytest.raises(unibus.CapabilityError, match="transaction"):
        unibus.connect("pulsar://127.0.0.1:6650", requirements={"delivery": "exactly_once"})
    with pytest.raises(unibus.CapabilityError, match="sequence id"):
        unibus.connect("pulsar://127.0.0.1:6650", requirements={"deduplication": True})


def test_max_delay_option_bounds_delayed_delivery() -> None:
    caps = backend(max_delay="1h").capabilities
    assert caps.max_delay == 3600
    with pytest.raises(unibus.CapabilityError, match="delayed_delivery"):
        unibus.connect("pulsar://127.0.0.1:6650", max_delay="1h",
                       requirements={"delayed_delivery": "2h"})


# -- producer checks that need no broker ----------------------------------------------------

async def test_oversized_message_and_refused_delay_need_no_broker() -> None:
    from unibus_pulsar._producer import PulsarProducer

    b = backend(max_message_size=2048)
    producer = PulsarProducer(b)
    with pytest.raises(unibus.MessageTooLargeError, match="2048"):
        await producer.publish("t", unibus.Message(body=b"x" * 4096))
    failover = PulsarProducer(backend(subscription_type="failover"))
    with pytest.raises(unibus.CapabilityError, match="Shared"):
        await failover.publish("t", unibus.Message(body=b"x"), delay=5)


async def test_unreachable_broker_is_a_connection_error() -> None:
    bus = unibus.connect("pulsar://127.0.0.1:1", connect_timeout=2)
    with pytest.raises(unibus.ConnectionFailedError):
        await bus.open()


# -- names and positions --------------------------------------------------------------------

def test_names_map_both_ways() -> None:
    names = Names("public", "default")
    full = names.topic("orders.placed")
    assert full == "persistent://public/default/orders.placed"
    assert names.short(full) == "orders.placed"
    assert names.short(full + "-partition-3") == "orders.placed"
    assert names.dead_letter_topic("orders", "billing") == "orders-billing-DLQ"
    assert names.dead_letter_topic("orders", None) == "orders-DLQ"
    with pytest.raises(unibus.ConfigError):
        names.topic("a/b")


def test_positions_round_trip_as_opaque_strings() -> None:
    mid = pulsar.MessageId(2, 17, 5, -1)
    position = encode_position("orders", mid)
    assert isinstance(position.offset, str)
    assert position.partition == 2
    back = decode_position(position)
    assert (back.partition(), back.ledger_id(), back.entry_id()) == (2, 17, 5)
    with pytest.raises(unibus.ConfigError):
        decode_position(Position("orders", "not base64!"))
    with pytest.raises(unibus.ConfigError):
        decode_position(Position("orders", 12))


def test_delivery_sets_every_field_of_the_base_delivery() -> None:
    """PulsarDelivery sets BaseDelivery's slots itself (it runs once per message): a slot
    added to BaseDelivery must be set there too."""

    class Consumer:
        group = "g"

    delivery = PulsarDelivery(Consumer(), ("pc", "msg"), "t", 2)  # type: ignore[arg-type]
    for name in BaseDelivery.__slots__:
        getattr(delivery, name)  # AttributeError: not set
    assert (delivery.topic, delivery.attempt, delivery.group, delivery.raw) == (
        "t", 2, "g", ("pc", "msg"))
    assert not delivery.settled


def test_dead_letter_cursor_ranges() -> None:
    done = acknowledged({"markDeletePosition": "5:2",
                         "individuallyDeletedMessages": "[(5:3..5:4], (5:6..5:8]]"})
    assert all(done(p) for p in [(5, 2), (5, 4), (5, 7), (4, 99)])
    assert not any(done(p) for p in [(5, 3), (5, 5), (5, 9), (6, 0)])
    assert not acknowledged(None)((1, 1))


# -- error mapping --------------------------------------------------------------------------

@pytest.mark.parametrize(("raised", "expected"), [
    (pulsar_asyncio.PulsarException(_pulsar.Result.Timeout), unibus.OperationTimeoutError),
    (pulsar_asyncio.PulsarException(_pulsar.Result.TopicNotFound), unibus.TopicNotFoundError),
    (pulsar_asyncio.PulsarException(_pulsar.Result.ConnectError),
     unibus.ConnectionFailedError),
    (pulsar_asyncio.PulsarException(_pulsar.Result.AlreadyClosed), unibus.ClosedError),
    (pulsar_asyncio.PulsarException(_pulsar.Result.MessageTooBig), unibus.PublishError),
    (pulsar_asyncio.PulsarException(_pulsar.Result.UnknownError), unibus.ConsumeError),
    (_pulsar.TopicNotFound("gone"), unibus.TopicNotFoundError),
    (httpx.ConnectError("refused"), unibus.ConnectionFailedError),
])
def test_client_errors_are_mapped(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info, boundary("doing it", unibus.ConsumeError):
        raise raised
    assert str(info.value).startswith("doing it")
    assert info.value.__cause__ is raised


async def test_lookups_are_retried_while_the_broker_comes_back() -> None:
    from unibus_pulsar._errors import while_unavailable

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise unibus.ConnectionFailedError("no available broker")
        return "ok"

    assert await while_unavailable(flaky, within=10) == "ok"
    assert len(calls) == 3

    async def down() -> str:
        raise unibus.ConnectionFailedError("still down")

    with pytest.raises(unibus.ConnectionFailedError):
        await while_unavailable(down, within=0.3)


# -- the client's log ----------------------------------------------------------------------

@pytest.fixture
def client_log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("unibus.pulsar.client")
    before = logger.level
    yield logger
    logger.setLevel(before)  # also clears the logger's isEnabledFor cache


@pytest.mark.parametrize(("level", "expected"), [
    (logging.WARNING, _pulsar.LoggerLevel.Warn),
    (logging.INFO, _pulsar.LoggerLevel.Info),
    (logging.ERROR, _pulsar.LoggerLevel.Error),
])
def test_client_log_is_filtered_by_the_client_above_debug(
        client_log: logging.Logger, level: int, expected: object) -> None:
    client_log.setLevel(level)
    given = client_logger()
    assert isinstance(given, pulsar.ConsoleLogger)
    assert given.log_level == expected


def test_client_log_goes_through_python_logging_at_debug(client_log: logging.Logger) -> None:
    client_log.setLevel(logging.DEBUG)
    assert client_logger() is client_log
