import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

import unibus
from unibus.cloudevents import from_cloudevent, to_cloudevent
from unibus.message import Message

header_names = st.text(min_size=1, max_size=30).filter(lambda s: not s.startswith("ce_"))


@given(
    body=st.binary(max_size=200),
    key=st.none() | st.text(max_size=20),
    headers=st.dictionaries(header_names, st.text(max_size=20), max_size=5),
    subject=st.none() | st.text(max_size=10),
    version=st.none() | st.integers(min_value=0, max_value=2**40),
)
def test_mapping_is_lossless(body: bytes, key: str | None, headers: dict[str, str],
                             subject: str | None, version: int | None) -> None:
    message = Message(body=body, key=key, headers=headers, subject=subject,
                      aggregate_version=version, correlation_id="c", causation_id="d",
                      schema_version="1", content_type="application/octet-stream")
    event = to_cloudevent(message)
    assert from_cloudevent(json.loads(json.dumps(event))) == message


def test_output_is_a_valid_cloudevent_for_the_sdk() -> None:
    # The reference SDK validates and parses what we produce.
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    message = Message(body=b"hi", type="orders.placed", source="shop", subject="42",
                      correlation_id="corr", headers={"tenant": "acme", "X-Trace": "t"},
                      time=datetime(2026, 11, 28, tzinfo=UTC))
    event = to_cloudevent(message)
    sdk = JSONFormat().read(CloudEvent, json.dumps(event).encode())
    assert sdk.get_id() == message.id
    assert sdk.get_type() == "orders.placed"
    assert sdk.get_data() == b"hi"
    assert sdk.get_extension("correlationid") == "corr"
    assert sdk.get_extension("tenant") == "acme"
    assert from_cloudevent(json.loads(JSONFormat().write(sdk))) == message


def test_events_from_other_producers_decode() -> None:
    event = {"specversion": "1.0", "id": "1", "source": "/x", "type": "t",
             "time": "2026-11-28T10:00:00Z", "datacontenttype": "application/json",
             "data": {"a": 1}}
    message = from_cloudevent(event)
    assert message.body == b'{"a":1}'
    assert message.time == datetime(2026, 11, 28, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "event",
    [
        {"id": "1"},
        {"specversion": "0.3", "id": "1", "source": "s", "type": "t"},
        {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "yesterday"},
        {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "%%"},
    ],
)
def test_malformed_events_raise_a_typed_error(event: dict[str, object]) -> None:
    with pytest.raises(unibus.InvalidMessageError):
        from_cloudevent(event)
