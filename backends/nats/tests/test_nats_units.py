"""Naming, header encoding, options and capabilities: no broker needed."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from unibus_nats import NATSBackend, NATSOptions
from unibus_nats._capabilities import declare
from unibus_nats._client import UnibusClient
from unibus_nats._consumer import JetStreamConsumer, NATSDelivery
from unibus_nats._names import dlq_stream, dlq_subject, stream_name, subject
from unibus_nats._publisher import Publisher
from unibus_nats._wire import from_nats, header_block, to_nats

import unibus
from unibus.capabilities import DeliveryGuarantee, Ordering


def test_topic_names_map_to_distinct_valid_stream_names() -> None:
    assert stream_name("orders") == "orders"
    dotted = stream_name("orders.eu")
    assert "." not in dotted
    assert dotted.startswith("orders_eu_")
    assert stream_name("orders_eu") == "orders_eu" != dotted
    assert stream_name("a b/c") != stream_name("a_b_c")
    assert dlq_stream("orders.eu") == dotted + "_DLQ"
    assert dlq_subject("orders.eu", "billing.v2").startswith("orders.eu.dlq.billing_v2_")
    assert dlq_subject("orders", None) == "orders.dlq"
    assert len(stream_name("x" * 500)) < 255


@pytest.mark.parametrize("bad", ["", "a..b", "orders.*", "orders.>", "has space", ".lead",
                                 "orders.dlq", "orders.dlq.billing"])
def test_topics_that_are_not_literal_subjects_are_config_errors(bad: str) -> None:
    with pytest.raises(unibus.ConfigError):
        subject(bad)


def test_headers_nats_cannot_carry_verbatim_round_trip() -> None:
    message = unibus.Message(
        body=b"x", key=" spaced key ",
        headers={"traceback": "line 1\nline 2\r\n", "pad": "  both  ", "empty": "",
                 "looks": "=?utf-8?b?aGk=?=", "Nats-Custom": "mine", "näme: odd": "v",
                 "utf": "ünïcødé ✓ 漢字"},
    )
    wire = to_nats(message)
    assert wire["Nats-Msg-Id"] == message.id
    assert all("\n" not in v and v == v.strip() for v in wire.values())
    assert "Nats-Custom" not in wire, "user headers never reach the server as Nats-* headers"
    back = from_nats(b"x", wire)
    assert back.headers == message.headers
    assert back.key == message.key
    assert back.id == message.id


ODD = unibus.Message(
    body=b"x", key=" spaced key ",
    headers={"traceback": "line 1\nline 2\r\n", "pad": "  both  ", "empty": "",
             "looks": "=?utf-8?b?aGk=?=", "Nats-Custom": "mine", "näme: odd": "v",
             "utf": "ünïcødé ✓ 漢字", "tab": "\tx", "ctl": "a\x01b", "a/b": "c"},
    subject="s", aggregate_version=3, correlation_id="c-1",
)


@pytest.mark.parametrize("message", [
    unibus.Message(body=b"x"), ODD, ODD.replace(id=" odd\nid "), ODD.replace(headers={}),
])
async def test_header_blocks_parse_back_to_the_message(message: unibus.Message) -> None:
    for _ in range(2):  # the second time from the remembered template
        block = header_block(message, stream="S", msg_id=None)
        headers = await UnibusClient()._process_headers(bytes(block))
        assert headers is not None
        assert headers["Nats-Expected-Stream"] == "S"
        assert headers["Nats-Msg-Id"] == message.id.strip().replace("\n", " ")
        assert from_nats(b"x", headers) == message
        # nats-py's own parser reads the same block the same way
        assert await Client._process_headers(UnibusClient(), bytes(block)) == headers


@pytest.mark.parametrize("raw", [
    b"NATS/1.0\r\na: b\r\n\r\n", b"NATS/1.0\r\n a : b \r\n\r\n", b"NATS/1.0\r\nx y: z\r\n\r\n",
    b"NATS/1.0\r\n\xc3\xa4: v\r\nk:\xff\r\n\r\n", b"NATS/1.0\r\n\x01: v\r\nno colon\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\n\r\n", b"NATS/1.0 100 Idle Heartbeat\r\nA: 1\r\n\r\n",
    b"NATS/1.0\r\n\r\n",
])
async def test_header_parsing_matches_nats_py(raw: bytes) -> None:
    client = UnibusClient()
    assert await client._process_headers(raw) == await Client._process_headers(client, raw)


def test_options_from_url_and_keywords() -> None:
    options = NATSBackend.parse_options(
        "nats://127.0.0.1:4222?ack_wait=45s&backoff=1s,5s,1m&max_age=7d&storage=memory",
        {"double_ack": True},
    )
    assert isinstance(options, NATSOptions)
    assert options.ack_wait == 45.0
    assert options.backoff == (1.0, 5.0, 60.0)
    assert options.max_age == 7 * 86400
    assert options.storage == "memory"
    assert options.double_ack is True
    assert NATSBackend.parse_options("tls+nats://h:4222").tls is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [{"mode": "fast"}, {"storage": "disk"}, {"replicas": 0},
                                 {"ack_wait": "soon"}, {"backoff": "1s,x"}])
def test_bad_options_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(unibus.ConfigError):
        unibus.connect("nats://127.0.0.1:4222", **bad)


def test_server_lists_and_credentials_in_the_url() -> None:
    backend = NATSBackend("nats://u%40x:p%3Aw@a:4223,b,[::1]:4224",
                          NATSOptions())
    assert backend.servers == ["nats://a:4223", "nats://b:4222", "nats://[::1]:4224"]
    assert backend._auth == {"user": "u@x", "password": "p:w"}
    assert NATSBackend("nats://s3cret@h", NATSOptions())._auth == {"token": "s3cret"}


def test_declared_capabilities_per_mode() -> None:
    js = NATSBackend.declare(NATSOptions())
    assert js.delivery == frozenset({DeliveryGuarantee.AT_LEAST_ONCE})
    assert js.replay
    assert js.consumer_groups
    assert js.fan_out
    assert js.batch_publish
    assert js.dedup_window == 120.0
    assert js.ordering is Ordering.NONE
    assert "double_ack" in js.reason("delivery")
    core = NATSBackend.declare(NATSOptions(mode="core"))
    assert core.delivery == frozenset({DeliveryGuarantee.AT_MOST_ONCE})
    assert not core.replay
    assert core.dedup_window is None
    assert not core.retention


def test_exactly_once_is_refused_with_the_reason() -> None:
    with pytest.raises(unibus.CapabilityError, match="double_ack") as info:
        unibus.connect("nats://127.0.0.1:4222", requirements={"delivery": "exactly_once"})
    assert "idempotency" in str(info.value)
    with pytest.raises(unibus.CapabilityError, match="mode=jetstream"):
        unibus.connect("nats://127.0.0.1:4222", mode="core", requirements={"replay": True})


class _SwallowingMsg:
    """A JetStream message whose in-progress ack swallows a cancellation, as nats-py's
    publish does when its flush is cancelled (``except asyncio.CancelledError: pass``)."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.swallowing = True

    async def in_progress(self) -> None:
        self.called.set()
        while self.swallowing:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.get_running_loop().create_future()


async def test_close_ends_a_heartbeat_whose_cancellation_was_swallowed() -> None:
    options = NATSOptions(ack_wait=0.3)
    consumer = JetStreamConsumer(
        ["t"], "g", capabilities=declare(options), prefetch=10, max_attempts=None,
        nc=None, js=None, topology=None, writer=None, options=options)  # type: ignore[arg-type]
    msg = _SwallowingMsg()
    consumer._outstanding.add(NATSDelivery(consumer, unibus.Message(b"x"), "t", 1, None, msg))
    consumer._spawn(consumer._heartbeat())
    await asyncio.wait_for(msg.called.wait(), 10)
    msg.swallowing = False  # this in-progress ack ends, swallowing the close's cancellation
    closing = asyncio.create_task(consumer.close(drain_timeout=0))
    # Not wait_for, which would cancel close(); a close() left hanging is cancelled with the
    # test's event loop.
    finished, _ = await asyncio.wait({closing}, timeout=10)
    assert finished, "a heartbeat that missed its cancellation held close()"


class _Wire:
    """Just enough of a client for a Publisher: what it writes is recorded, not sent."""

    def __init__(self) -> None:
        self.sent = asyncio.Event()

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: object) -> object:
        return object()

    async def publish_batch(self, subject: str, items: object) -> None:
        self.sent.set()


async def test_a_publish_cancelled_as_its_puback_arrives_raises_the_cancellation() -> None:
    # Python 3.11's asyncio.wait_for returns when the cancellation arrives as the awaited
    # future completes: the caller's publishing loop would carry on after being cancelled.
    wire = _Wire()
    publisher = Publisher(wire)  # type: ignore[arg-type]
    publishing = asyncio.create_task(publisher.publish("s", [(b"x", b"")], 30))
    await asyncio.wait_for(wire.sent.wait(), 10)
    await publisher._on_reply(Msg(wire, subject=f"{publisher._prefix}0",  # type: ignore[arg-type]
                                  data=b'{"stream": "S", "seq": 1}'))
    publishing.cancel()  # in the same turn of the loop as the PubAck
    with pytest.raises(asyncio.CancelledError):
        await publishing
