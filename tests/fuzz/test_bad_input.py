"""Random URLs, options, requirements, headers and payloads: unibus answers with success or a
typed unibus error, never an untyped exception or a hang. UNIBUS_FUZZ_EXAMPLES raises the count
(nightly-style runs); CI runs 1,000 examples per target."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unibus
from unibus.cloudevents import from_cloudevent
from unibus.serializers import JsonSerializer

EXAMPLES = int(os.environ.get("UNIBUS_FUZZ_EXAMPLES", "1000"))
# CI replays the same 1,000 examples every run (derandomize), so a red run is reproducible;
# UNIBUS_FUZZ_RANDOM=1 explores new ones (nightly-style runs with UNIBUS_FUZZ_EXAMPLES).
fuzz = settings(max_examples=EXAMPLES, deadline=None,
                derandomize=os.environ.get("UNIBUS_FUZZ_RANDOM") != "1", database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SCHEMES = ["memory", "sqlite", "kafka", "kafka+ssl", "amqp", "amqps", "rabbitmq", "sqs",
           "sqs+fifo", "nats", "tls+nats", "pulsar", "pulsar+ssl", "redis", "", "http"]
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6,
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(SCHEMES))
    rest = draw(st.text(max_size=40))
    query = draw(st.dictionaries(st.sampled_from(
        ["auto_create", "client_id", "connect_timeout", "fifo", "mode", "endpoint_url",
         "tenant", "lease_timeout", "x"]), st.text(max_size=10), max_size=3))
    joined = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{scheme}://{rest}" + (f"?{joined}" if joined else "")


@fuzz
@given(url=urls() | st.text(max_size=60),
       options=st.dictionaries(st.sampled_from(
           ["auto_create", "client_id", "connect_timeout", "max_message_size", "bogus",
            "dedup_window", "fifo", "exactly_once"]), anything, max_size=3),
       requirements=st.dictionaries(st.sampled_from(
           ["delivery", "ordering", "replay", "retention", "delayed_delivery", "ttl",
            "max_message_size", "nonsense"]), anything, max_size=3))
def test_connect_answers_with_a_bus_or_a_typed_error(
    url: str, options: dict[str, Any], requirements: dict[str, Any]
) -> None:
    try:
        bus = unibus.connect(url, requirements=requirements, **options)
    except unibus.UnibusError:
        return
    assert isinstance(bus, unibus.Bus)


header_names = st.text(min_size=0, max_size=30)
header_values = st.text(max_size=100) | st.integers() | st.none() | st.binary(max_size=10)


@fuzz
@given(body=st.binary(max_size=2000) | st.text(max_size=200) | anything,
       key=st.none() | st.text(max_size=50) | st.integers(),
       headers=st.dictionaries(header_names, header_values, max_size=12))
def test_building_messages_gives_a_message_or_a_typed_error(
    body: Any, key: Any, headers: dict[str, Any]
) -> None:
    try:
        message = unibus.Message(body=body, key=key, headers=headers)
    except unibus.UnibusError:
        return
    assert unibus.Message.from_wire(message.body, message.wire_headers(),
                                    key=message.key) == message


@fuzz
@given(data=st.binary(max_size=300), event=st.dictionaries(
    st.sampled_from(["specversion", "id", "source", "type", "time", "data", "data_base64",
                     "datacontenttype", "aggregateversion", "unibusheaders", "x"]),
    anything, max_size=8))
def test_decoding_gives_a_value_or_a_typed_error(data: bytes, event: dict[str, Any]) -> None:
    with contextlib.suppress(unibus.UnibusError):
        JsonSerializer().decode(data)
    with contextlib.suppress(unibus.UnibusError):
        from_cloudevent(event)


def _publish_fuzz(url: str) -> None:
    loop = asyncio.new_event_loop()
    bus = unibus.connect(url)
    loop.run_until_complete(bus.open())

    @fuzz
    @given(body=st.binary(max_size=5000) | st.text(max_size=100) | anything,
           headers=st.dictionaries(header_names, header_values, max_size=12),
           key=st.none() | st.text(max_size=30),
           topic=st.text(min_size=0, max_size=30))
    def publish(body: Any, headers: dict[str, Any], key: str | None, topic: str) -> None:
        async def attempt() -> None:
            with contextlib.suppress(unibus.UnibusError):
                await asyncio.wait_for(
                    bus.publish(topic or "fuzz", body, key=key, headers=headers), 10)

        loop.run_until_complete(attempt())

    try:
        publish()
    finally:
        loop.run_until_complete(bus.close())
        loop.close()


def test_publish_on_memory_gives_a_receipt_or_a_typed_error() -> None:
    _publish_fuzz("memory://fuzz")


def test_publish_on_sqlite_gives_a_receipt_or_a_typed_error(tmp_path: Any) -> None:
    _publish_fuzz(f"sqlite:///{tmp_path}/fuzz.db")
