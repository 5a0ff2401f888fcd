import dataclasses
import pickle
from datetime import UTC, datetime

import pytest

import unibus
from unibus import deadletter
from unibus.message import Message, Receipt


def test_wire_headers_round_trip_every_field() -> None:
    sent = Message(
        body=b"\x00\x01", key="k", headers={"a": "1", "ü": "✓"}, type="t", source="s",
        subject="sub", content_type="application/json", correlation_id="c",
        causation_id="x", aggregate_version=3, schema_version="2",
        time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    got = Message.from_wire(sent.body, sent.wire_headers(), key=sent.key)
    assert got == sent


def test_foreign_messages_get_an_id_and_keep_their_headers() -> None:
    got = Message.from_wire(b"x", {"x-custom": "1", "ce_unknownext": "y"})
    assert got.id
    assert got.headers == {"x-custom": "1"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"body": "text"}, "body must be bytes"),
        ({"body": {"a": 1}}, "serializer"),
        ({"key": 5}, "key must be"),
        ({"headers": {"a": 1}}, "str value"),
        ({"headers": {"": "x"}}, "non-empty"),
        ({"headers": {"ce_id": "x"}}, "reserved"),
        ({"headers": None}, "headers must be a mapping"),
        ({"headers": [("a", "b")]}, "headers must be a mapping"),
        ({"id": ""}, "id"),
        ({"time": datetime(2026, 1, 1)}, "timezone"),
        ({"aggregate_version": "3"}, "aggregate_version"),
    ],
)
def test_invalid_messages_raise_a_typed_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(unibus.InvalidMessageError, match=match):
        Message(**kwargs)  # type: ignore[arg-type]


def test_invalid_message_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Message(key=1)  # type: ignore[arg-type]


def test_bytearray_bodies_are_frozen_to_bytes() -> None:
    assert Message(body=bytearray(b"ab")).body == b"ab"


def test_dead_letter_context_survives_and_replay_keeps_a_chain() -> None:
    original = Message(body=b"b", key="k", headers={"tenant": "acme"})
    failed = original.with_headers(**deadletter.failure_headers(
        original, topic="orders", group="billing", reason="boom", attempts=3))
    dead = deadletter.DeadLetter.from_message(failed, default_topic="orders.dlq")
    assert (dead.reason, dead.attempts, dead.original_topic, dead.group) == (
        "boom", 3, "orders", "billing")
    replay = dead.replayable()
    assert replay.id == original.id
    assert replay.headers["tenant"] == "acme"
    assert replay.headers[deadletter.REPLAY_COUNT] == "1"
    assert replay.headers[deadletter.ORIGINAL_TOPIC] == "orders"
    assert deadletter.REASON not in replay.headers
    again = deadletter.DeadLetter.from_message(
        replay.with_headers(**deadletter.failure_headers(
            replay, topic="orders", group="billing", reason="boom", attempts=3)),
        default_topic="orders.dlq")
    assert again.replayable().headers[deadletter.REPLAY_COUNT] == "2"
    assert again.message.headers[deadletter.FIRST_FAILURE] == failed.headers[
        deadletter.FIRST_FAILURE]


def test_default_ids_are_unique_uuids_in_this_process_and_a_forked_child() -> None:
    import multiprocessing
    import uuid

    from unibus.message import new_id

    ours = {Message().id for _ in range(1000)} | {new_id() for _ in range(1000)}
    assert len(ours) == 2000
    assert all(uuid.UUID(i).version == 8 for i in ours)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        theirs = set(pool.apply(_ids, (1000,)))
    assert len(theirs) == 1000
    assert not ours & theirs


def _ids(count: int) -> list[str]:
    return [Message().id for _ in range(count)]


@pytest.mark.parametrize("moment", [
    datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime.fromisoformat("2026-01-02T03:04:05.000007+02:00"),
])
def test_wire_time_is_isoformat(moment: datetime) -> None:
    from unibus.message import wire_time

    assert wire_time(moment) == moment.isoformat()
    assert wire_time(moment) == wire_time(moment)  # from the cache the second time


def test_messages_and_receipts_stay_immutable_dataclasses() -> None:
    message = Message(b"a", "k", {"h": "v"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.body = b"b"  # type: ignore[misc]
    assert message == Message(b"a", "k", {"h": "v"}, id=message.id, time=message.time)
    assert message.replace(key="z").key == "z"
    assert [f.name for f in dataclasses.fields(message)][:3] == ["body", "key", "headers"]
    assert pickle.loads(pickle.dumps(message)) == message
    assert Message().headers == {}
    assert Message().id != Message().id
    receipt = Receipt("t", "id", offset=3)
    assert (receipt.partition, receipt.offset, receipt.duplicate) == (None, 3, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt.offset = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        Message(b"", nope=1)  # type: ignore[call-arg]
