"""Pure parts of the SQS backend: options, the declaration, the codec and queue names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import types

import pytest
from unibus_sqs import SQSBackend
from unibus_sqs._capabilities import declare
from unibus_sqs._codec import (
    MAX_ATTRIBUTES,
    PACKED,
    decode,
    encode,
    encode_sized,
    fifo_id,
    wire_size,
)
from unibus_sqs._consumer import Source, SQSConsumer, SQSDelivery
from unibus_sqs._names import Names
from unibus_sqs._options import SQSOptions
from unibus_sqs._producer import build_entry

import unibus
from unibus import deadletter
from unibus.capabilities import DeliveryGuarantee, Ordering
from unibus.message import DEFAULT_SOURCE, DEFAULT_TYPE


def options(url: str, **extra: object) -> SQSOptions:
    parsed = SQSBackend.parse_options(url, extra)
    assert isinstance(parsed, SQSOptions)
    return parsed


def test_url_gives_region_fifo_and_group_mode() -> None:
    o = options("sqs://eu-west-1?endpoint_url=http://127.0.0.1:9324")
    assert (o.region, o.fifo, o.group_mode) == ("eu-west-1", False, "queue")
    assert options("sqs+fifo://").fifo
    assert options("sqs://").group_mode == "sns"  # AWS itself has SNS
    sns = options("sqs://?endpoint_url=http://127.0.0.1:4566&groups=sns")
    assert sns.group_mode == "sns"
    assert sns.sns_url == "http://127.0.0.1:4566"
    assert options("sqs://?endpoint_url=http://a:1&sns_endpoint_url=http://b:2").group_mode == \
        "sns"


@pytest.mark.parametrize("bad", [
    {"endpoint_url": "127.0.0.1:9324"},
    {"wait_time": 21},
    {"groups": "kafka"},
    {"queue_prefix": "bad prefix"},
    {"aws_access_key_id": "AKIA..."},
])
def test_bad_options_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(unibus.ConfigError):
        options("sqs://us-east-1", **bad)


def test_url_with_a_path_is_refused() -> None:
    with pytest.raises(unibus.ConfigError, match="no path"):
        options("sqs://us-east-1/queue")


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-very-secret"
    o = options("sqs://us-east-1", aws_access_key_id="AKIDEXAMPLE",
                aws_secret_access_key=secret, aws_session_token=secret)
    assert secret not in repr(o)
    assert secret not in str(o.model_dump())
    with pytest.raises(unibus.ConfigError) as info:
        options("sqs://us-east-1", aws_secret_access_key=secret)
    assert secret not in str(info.value)


def test_standard_mode_refuses_exactly_once_naming_fifo_and_other_backends() -> None:
    caps = SQSBackend.declare(options("sqs://?endpoint_url=http://127.0.0.1:9324"))
    assert caps.delivery == {DeliveryGuarantee.AT_LEAST_ONCE}
    assert caps.ordering is Ordering.NONE
    assert not caps.replay
    assert not caps.fan_out
    assert caps.max_delay == 900
    assert caps.dedup_window is None
    reason = caps.reason("delivery")
    assert "FIFO" in reason
    assert "kafka" in reason
    with pytest.raises(unibus.CapabilityError, match="FIFO"):
        unibus.connect("sqs://?endpoint_url=http://127.0.0.1:9324",
                       requirements={"delivery": "exactly_once"})


def test_fifo_and_sns_modes_change_the_declaration() -> None:
    fifo = SQSBackend.declare(options("sqs+fifo://?endpoint_url=http://127.0.0.1:9324"))
    assert fifo.ordering is Ordering.PARTITION
    assert fifo.dedup_window == 300
    assert fifo.max_delay is None
    assert "FIFO" in fifo.reason("delayed_delivery")
    sns = SQSBackend.declare(options("sqs://?endpoint_url=http://127.0.0.1:4566&groups=sns"))
    assert sns.fan_out
    assert sns.consumer_groups
    assert sns.max_delay is None
    with pytest.raises(unibus.CapabilityError, match="15 minutes"):
        unibus.connect("sqs://?endpoint_url=http://127.0.0.1:9324",
                       requirements={"delayed_delivery": "16m"})
    with pytest.raises(unibus.CapabilityError, match="replay"):
        unibus.connect("sqs+fifo://", requirements={"replay": True})


def test_many_headers_are_packed_into_at_most_ten_attributes() -> None:
    headers = {f"h{i}": f"v{i}" for i in range(15)}
    headers.update({"with space": "x", "empty": "", "AWS.reserved": "y"})
    message = unibus.Message(body=b"{}", key="k", headers=headers, subject="s",
                             correlation_id="c")
    body, attributes = encode(message)
    assert len(attributes) <= MAX_ATTRIBUTES
    assert PACKED in attributes
    assert "ce_id" in attributes  # envelope fields stay native
    json.loads(attributes[PACKED]["StringValue"])
    got = decode(body, attributes)
    assert got == message


def test_few_headers_stay_native_attributes() -> None:
    message = unibus.Message(body=b"x", headers={"tenant": "acme"})
    _, attributes = encode(message)
    assert attributes["tenant"] == {"DataType": "String", "StringValue": "acme"}
    assert PACKED not in attributes


@pytest.mark.parametrize("body", [b"", bytes(range(256)), "grüße ✓".encode(), b"\x00abc",
                                  b"\xff\xfe", b"plain text"])
def test_bodies_round_trip(body: bytes) -> None:
    message = unibus.Message(body=body)
    text, attributes = encode(message)
    assert text  # SQS refuses empty bodies
    assert decode(text, attributes).body == body


def test_foreign_messages_keep_their_attributes() -> None:
    got = decode("hello", {"origin": {"DataType": "String", "StringValue": "lambda"}})
    assert got.body == b"hello"
    assert got.headers == {"origin": "lambda"}
    assert got.id


def test_default_envelope_fields_stay_off_the_wire_and_come_back() -> None:
    message = unibus.Message(body=b"x", headers={"tenant": "acme"})
    _, attributes = encode(message)
    assert set(attributes) == {"ce_id", "ce_time", "tenant"}
    got = decode("x", attributes)
    assert got == message
    assert (got.type, got.source) == (DEFAULT_TYPE, DEFAULT_SOURCE)


def test_non_default_type_and_source_are_sent() -> None:
    message = unibus.Message(body=b"x", type="orders.placed", source="shop", subject="s")
    _, attributes = encode(message)
    assert attributes["ce_type"]["StringValue"] == "orders.placed"
    assert attributes["ce_source"]["StringValue"] == "shop"
    assert "ce_specversion" not in attributes
    assert decode("x", attributes) == message
    only_type = message.replace(source=DEFAULT_SOURCE)
    _, attributes = encode(only_type)
    assert "ce_source" not in attributes
    assert decode("x", attributes) == only_type


@pytest.mark.parametrize("message", [
    unibus.Message(body=b"x", key="k", headers={"tenant": "acme"}),
    unibus.Message(body=b"\xff", type="t", source="s", correlation_id="c", aggregate_version=3),
    unibus.Message(body=b"", headers={f"h{i}": f"v{i}" for i in range(12)}),
])
def test_messages_in_the_five_attribute_form_still_decode(message: unibus.Message) -> None:
    """What unibus wrote before defaults were left out: every envelope attribute sent."""
    body, attributes = encode(message)
    full = message.wire_headers()
    envelope = {n: {"DataType": "String", "StringValue": full[n]}
                for n in ("ce_specversion", "ce_type", "ce_source")}
    old = {**attributes, **envelope}
    assert decode(body, old) == message
    if PACKED in attributes:  # the old form could also carry them packed
        packed = json.loads(attributes[PACKED]["StringValue"])
        packed.update({n: full[n] for n in envelope})
        old = {**attributes, PACKED: {"DataType": "String", "StringValue": json.dumps(packed)}}
        assert decode(body, old) == message


def test_a_message_without_ce_id_is_foreign() -> None:
    """A non-unibus producer's message: fresh id, default type and source, attributes as
    user headers (a ce_type it sends is still read as the type)."""
    got = decode("hi", {"origin": {"DataType": "String", "StringValue": "lambda"},
                        "ce_type": {"DataType": "String", "StringValue": "aws.event"}})
    assert got.headers == {"origin": "lambda"}
    assert got.type == "aws.event"
    assert got.source == DEFAULT_SOURCE
    assert got.id
    assert got.id != decode("hi", {}).id


def test_dead_letter_entries_carry_envelope_and_failure_headers() -> None:
    message = unibus.Message(body=b"x", key="k", headers={"tenant": "acme"})
    extra = deadletter.failure_headers(message, topic="t", group="g", reason="bad",
                                       attempts=3)
    dead = message.with_headers(**extra)
    entry = build_entry(dead, fifo=False, sns=False)
    assert len(entry["MessageAttributes"]) <= MAX_ATTRIBUTES
    assert decode(entry["MessageBody"], entry["MessageAttributes"]) == dead


@pytest.mark.parametrize("message", [
    unibus.Message(body=b"x" * 200),
    unibus.Message(body=b"\xff\x00", key="k", headers={"a": "\u00e9"}, type="t"),
    unibus.Message(body=b""),
    unibus.Message(body="gr\u00fc\u00dfe".encode(), headers={f"h{i}": "v" for i in range(12)}),
])
def test_the_size_counted_while_encoding_is_the_wire_size(message: unibus.Message) -> None:
    body, attributes, size = encode_sized(message)
    assert size == wire_size(body, attributes)


def test_wire_size_counts_the_base64_growth() -> None:
    binary = bytes([0xFF]) * 200_000  # passes check_size, but base64 makes it ~267 KB
    with pytest.raises(unibus.MessageTooLargeError, match="262144"):
        build_entry(unibus.Message(body=binary), fifo=False, sns=False)
    entry = build_entry(unibus.Message(body=b"a" * 200_000), fifo=False, sns=False)
    assert len(entry["MessageBody"]) == 200_000


def test_fifo_entries_use_key_as_group_and_id_as_deduplication() -> None:
    message = unibus.Message(body=b"x", key="order-7")
    entry = build_entry(message, fifo=True, sns=False)
    assert entry["MessageGroupId"] == "order-7"
    assert entry["MessageDeduplicationId"] == message.id
    keyless = unibus.Message(body=b"x")
    assert build_entry(keyless, fifo=True, sns=True)["MessageGroupId"] == keyless.id
    assert fifo_id("ключ").startswith("h-")
    assert len(fifo_id("x" * 500)) <= 128


def test_queue_names_follow_sqs_rules() -> None:
    fifo = Names("app-", fifo=True)
    assert fifo.topic_queue("orders.placed") == "app-orders_placed.fifo"
    long = fifo.group_queue("t" * 60, "g" * 60)
    assert len(long) == 80
    assert long.endswith(".fifo")
    assert long == fifo.group_queue("t" * 60, "g" * 60), "stable"
    assert fifo.belongs_to(long, "t" * 60)
    assert not fifo.belongs_to("app-orders_placed2.fifo", "orders.placed")
    with pytest.raises(unibus.ConfigError, match=r"\.fifo"):
        fifo.topic_queue("orders.fifo")
    with pytest.raises(unibus.ConfigError, match="letters"):
        Names("", fifo=False).topic_queue("orders/placed")


class _SwallowingSQS:
    """An SQS client whose ChangeMessageVisibilityBatch swallows a cancellation (as a
    Python 3.11 ``asyncio.wait_for`` below it can)."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.swallowing = True

    async def change_message_visibility_batch(self, **_: object) -> dict[str, object]:
        self.called.set()
        while self.swallowing:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.get_running_loop().create_future()
        return {}


async def test_close_ends_a_visibility_keeper_whose_cancellation_was_swallowed() -> None:
    o = options("sqs://us-east-1", visibility_timeout=2)
    sqs = _SwallowingSQS()
    topology = types.SimpleNamespace(options=o, clients=types.SimpleNamespace(sqs=sqs))
    source = Source("t", "g", "q", private=False, url="u")
    consumer = SQSConsumer(topology, [source], "g", capabilities=declare(o),  # type: ignore[arg-type]
                           prefetch=10, max_attempts=None)
    delivery = SQSDelivery(consumer, source, {"ReceiptHandle": "r"}, 1,
                           time.monotonic() - 60)  # due for an extension
    consumer._unsettled[delivery.receipt] = delivery
    consumer._spawn(consumer._keep_invisible())
    await asyncio.wait_for(sqs.called.wait(), 10)
    sqs.swallowing = False  # this call ends, swallowing the close's cancellation
    closing = asyncio.create_task(consumer.close(drain_timeout=0))
    # Not wait_for, which would cancel close(); a close() left hanging is cancelled with the
    # test's event loop.
    finished, _ = await asyncio.wait({closing}, timeout=10)
    assert finished, "a visibility keeper that missed its cancellation held close()"
