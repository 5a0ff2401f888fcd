"""Broker-free behaviour: options, the capability declaration, the wire mapping, delays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiormq.exceptions as amqp
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import encode
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from unibus_rabbitmq import RabbitMQBackend, RabbitMQOptions, _errors, _wire
from unibus_rabbitmq._topology import Names, tier_ms

import unibus
from unibus.capabilities import Ordering


def _delivered(props: Basic.Properties, body: bytes = b"x", redelivered: bool = False) -> Any:
    return DeliveredMessage(
        delivery=Basic.Deliver(consumer_tag="c", delivery_tag=1, redelivered=redelivered,
                               exchange="t", routing_key=""),
        header=ContentHeader(body_size=len(body), properties=props),
        body=body,
        channel=None,  # type: ignore[arg-type]
    )


def test_every_scheme_selects_the_backend() -> None:
    for scheme in ("amqp", "amqps", "rabbitmq"):
        bus = unibus.connect(f"{scheme}://guest:guest@127.0.0.1/")
        assert isinstance(bus.backend, RabbitMQBackend)


def test_rabbitmq_scheme_and_query_become_a_plain_amqp_url() -> None:
    bus = unibus.connect("rabbitmq://u:p@h:1234/vh?queue_type=classic&heartbeat=5")
    backend = bus.backend
    assert isinstance(backend, RabbitMQBackend)
    assert backend._amqp_url() == "amqp://u:p@h:1234/vh"
    assert backend.options.queue_type == "classic"
    assert backend.options.heartbeat == 5


@pytest.mark.parametrize(
    "options",
    [
        {"queue_type": "stream"},
        {"max_priority": 10},  # quorum by default
        {"overflow": "reject-publish-dlx"},
        {"queue_type": "classic", "delivery_limit": 3},
        {"max_delay": 10**8},
        {"prefetch": 10},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(unibus.ConfigError):
        unibus.connect("amqp://127.0.0.1/", **options)


def test_declaration_depends_on_options() -> None:
    plain = RabbitMQBackend.declare(RabbitMQOptions())
    assert not plain.replay
    assert "kafka" in plain.reason("replay")
    assert plain.ordering is Ordering.NONE
    assert "single_active_consumer" in plain.reason("ordering")
    assert not plain.priority
    assert plain.ttl
    assert plain.native_dead_letter
    ordered = RabbitMQBackend.declare(RabbitMQOptions(single_active_consumer=True))
    assert ordered.ordering is Ordering.STRICT
    prioritised = RabbitMQBackend.declare(RabbitMQOptions(queue_type="classic", max_priority=5))
    assert prioritised.priority


def test_replay_refusal_names_the_backends_that_can() -> None:
    with pytest.raises(unibus.CapabilityError) as info:
        unibus.connect("amqp://127.0.0.1/", requirements={"replay": True})
    assert "delete messages once acknowledged" in str(info.value)
    assert "kafka" in str(info.value)


def test_ordering_is_granted_with_single_active_consumer() -> None:
    with pytest.raises(unibus.CapabilityError):
        unibus.connect("amqp://127.0.0.1/", requirements={"ordering": "strict"})
    unibus.connect("amqp://127.0.0.1/", requirements={"ordering": "strict"},
                   single_active_consumer=True)


def test_envelope_survives_the_wire() -> None:
    sent = unibus.Message(
        body=b"{}", key="k.1", headers={"tenant": "acme", "unibus-priority": "3"},
        type="orders.placed", subject="o/1", content_type="application/json",
        correlation_id="c", causation_id="d", aggregate_version=2, schema_version="1",
        time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    props = _wire.properties(sent, attempts=2)
    assert props.delivery_mode == 2
    assert props.priority == 3
    assert props.message_id == sent.id
    props.headers = {**(props.headers or {}), "x-delivery-count": 1,
                     "x-death": [{"reason": "expired"}], "x-first-death-queue": "q"}
    got, incoming = _wire.decode(_delivered(props, b"{}"))
    assert got == sent
    assert incoming.attempt == 2 + 1 + 1


@pytest.mark.parametrize("table", [
    {}, {"a": "b"}, {"z": "1", "a": "ünï", "m": ""}, {"x-unibus-attempts": 3, "big": 2**40},
    {"k" * 130: "long name"}, {"nested": {"n": "v"}, "list": ["a", 1], "t": True, "f": 1.5},
])
def test_header_tables_are_encoded_exactly_as_pamqp_does(table: dict[str, Any]) -> None:
    assert _wire.field_table(table) == encode.field_table(table)
    props = dict(headers=table or None, delivery_mode=2, message_id="m", content_type="a/b")
    assert _wire._Properties(**props).marshal() == Basic.Properties(**props).marshal()


def test_attempt_on_classic_queues_uses_the_redelivered_flag() -> None:
    props = _wire.properties(unibus.Message(body=b"x"))
    _, first = _wire.decode(_delivered(props))
    _, again = _wire.decode(_delivered(props, redelivered=True))
    assert (first.attempt, again.attempt) == (1, 2)


def test_ttl_and_priority_headers_are_validated() -> None:
    assert _wire.properties(unibus.Message(headers={"unibus-ttl": "1.5"})).expiration == "1500"
    for headers in ({"unibus-ttl": "soon"}, {"unibus-priority": "300"}):
        with pytest.raises(unibus.InvalidMessageError):
            _wire.properties(unibus.Message(headers=headers))


def test_routing_key_is_the_key_when_it_fits() -> None:
    assert _wire.routing_key(unibus.Message(key="a.b")) == "a.b"
    assert _wire.routing_key(unibus.Message(key="x" * 300)) == ""
    assert _wire.routing_key(unibus.Message()) == ""


def test_delay_tiers_never_shorten_a_delay() -> None:
    assert tier_ms(0.0001) == (10, 1)
    assert tier_ms(1.0) == (1000, 1000)
    assert tier_ms(1.2) == (2000, 1200)
    assert tier_ms(59.0) == (100_000, 59_000)
    tiers = {tier_ms(d / 10)[0] for d in range(1, 36000)}  # 0.1 s .. 1 h
    assert len(tiers) == 15, "three queues per decade"


def test_names() -> None:
    assert Names.queue("orders", "billing") == "orders.billing"
    assert Names.dlq("orders", "billing") == "orders.billing.dlq"
    assert Names.dlq("orders", None) == "orders.dlq"
    assert Names.retry("orders.billing", 1000) == "orders.billing.retry.1000"


def test_client_exceptions_become_unibus_errors() -> None:
    cases = [
        (_errors.connecting("h:1"), ConnectionRefusedError("refused"),
         unibus.ConnectionFailedError),
        (_errors.publishing("t"), amqp.ChannelNotFoundEntity("no exchange"),
         unibus.TopicNotFoundError),
        (_errors.publishing("t"), amqp.ChannelInvalidStateError("closed"),
         unibus.ConnectionFailedError),
        (_errors.publishing("t"), TimeoutError(), unibus.OperationTimeoutError),
        (_errors.topology("x"), amqp.ChannelPreconditionFailed("inequivalent arg"),
         unibus.TopologyError),
        (_errors.settling("ack"), amqp.ChannelInvalidStateError("closed"),
         unibus.SettlementError),
        (_errors.consuming("c"), amqp.AMQPError("boom"), unibus.ConsumeError),
    ]
    for manager, raised, expected in cases:
        with pytest.raises(expected), manager:
            raise raised


@pytest.mark.parametrize("props", [
    {},
    {"delivery_mode": 2, "message_id": "m"},
    {"content_type": "", "correlation_id": "", "expiration": "", "priority": 0,
     "delivery_mode": 1, "headers": {}},
    {"content_type": "application/json", "priority": 9, "correlation_id": "ç" * 100,
     "expiration": "1500", "message_id": "id", "headers": {"ce_id": "1", "a": 2}},
    {"message_id": "m", "app_id": "app", "reply_to": "r", "message_type": "t",
     "timestamp": datetime(2026, 1, 2, tzinfo=UTC), "user_id": "guest"},
])
def test_properties_are_marshalled_exactly_as_pamqp_does(props: dict[str, Any]) -> None:
    assert _wire._Properties(**props).marshal() == Basic.Properties(**props).marshal()


def test_an_envelope_is_marshalled_exactly_as_pamqp_does_repeatedly() -> None:
    sent = unibus.Message(
        body=b"{}", key="k", headers={"h": "v", "unibus-priority": "3", "unibus-ttl": "2"},
        content_type="application/json", subject="s", correlation_id="c", causation_id="d",
        aggregate_version=2, schema_version="1",
    )
    for _ in range(2):  # the second time from the cache of repeated header entries
        props = _wire.properties(sent, attempts=2, extra={"x-extra": "e"})
        plain = Basic.Properties(**{k: getattr(props, k) for k in Basic.Properties.__slots__})
        assert props.marshal() == plain.marshal()


def test_too_long_short_strings_are_refused_as_pamqp_does() -> None:
    with pytest.raises(TypeError):
        _wire._Properties(message_id="x" * 256).marshal()


@pytest.mark.parametrize("size", [0, 200, 131_064, 131_065, 300_000])
def test_a_window_is_framed_exactly_as_aiormq_frames_each_publish(size: int) -> None:
    from aiormq.abc import ChannelFrame
    from pamqp.body import ContentBody
    from unibus_rabbitmq import _pipeline

    max_body = 131_064
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    props = _wire.properties(unibus.Message(body=body, key="k"))
    parts: list[bytes] = []
    _pipeline._frames(7, max_body, _pipeline.Outgoing("ex", "k", body, props), parts)
    chunks = [body[i:i + max_body] for i in range(0, size, max_body)]
    frames = [Basic.Publish(exchange="ex", routing_key="k", mandatory=True),
              ContentHeader(body_size=size, properties=props), *map(ContentBody, chunks)]
    assert b"".join(parts) == ChannelFrame.marshall(channel_number=7, frames=frames).payload


def test_copies_of_a_message_go_in_separate_rounds() -> None:
    from unibus_rabbitmq import _pipeline

    a, b = unibus.Message(body=b"a"), unibus.Message(body=b"b")
    items = [_pipeline.Outgoing("t", "", m.body, _wire.properties(m)) for m in (a, b, a, a, b)]
    assert _pipeline.distinct_ids(items) == [[0, 1], [2, 4], [3]]
    assert _pipeline.distinct_ids(items[:2]) == [[0, 1]]


def test_coalesced_acks_are_the_frames_aiormq_writes() -> None:
    from unibus_rabbitmq import _pipeline

    for tag in (1, 2**40 + 7):
        frame = _pipeline._ACK.pack(1, 9, 13, 60, 80, tag, 0, 0xCE)
        assert frame == _marshalled(9, Basic.Ack(delivery_tag=tag, multiple=False))


def _marshalled(channel: int, frame: Any) -> bytes:
    from aiormq.abc import ChannelFrame

    return ChannelFrame.marshall(channel_number=channel, frames=[frame]).payload


class _StuckChannel:
    """The parts of an aiormq channel that :class:`Acks` uses, over a full write queue that
    nothing empties (a connection whose writer died)."""

    number = 3

    def __init__(self) -> None:
        self.is_closed = False
        self.write_queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self.write_queue.put_nowait(object())


async def test_drain_gives_up_acks_for_a_channel_that_closed_with_its_write_queue_full() -> None:
    from unibus_rabbitmq import _pipeline

    acks = _pipeline.Acks()
    channel = _StuckChannel()
    acks.add(channel, 1)  # type: ignore[arg-type]
    acks.flush()  # the queue is full: the frame waits in a put
    drain = asyncio.ensure_future(acks.drain(poll=0.01))
    await asyncio.sleep(0.05)
    assert not drain.done()  # an open channel's acks are still waited for
    channel.is_closed = True  # the broker requeues what a closed channel had unacked
    async with asyncio.timeout(5):
        await drain
    assert channel.write_queue.qsize() == 1  # nothing was written for the closed channel


async def test_drain_returns_once_a_full_write_queue_takes_the_acks() -> None:
    from unibus_rabbitmq import _pipeline

    acks = _pipeline.Acks()
    channel = _StuckChannel()
    acks.add(channel, 7)  # type: ignore[arg-type]
    acks.flush()
    drain = asyncio.ensure_future(acks.drain(poll=0.01))
    await asyncio.sleep(0.05)
    assert not drain.done()
    channel.write_queue.get_nowait()  # the writer takes a frame: the acks' frame goes in
    async with asyncio.timeout(5):
        await drain
    frame = channel.write_queue.get_nowait()
    assert frame.payload == _marshalled(3, Basic.Ack(delivery_tag=7, multiple=False))
