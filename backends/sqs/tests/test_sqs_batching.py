"""Group commit of deletes: acks share DeleteMessageBatch calls, each learns its own fate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from unibus_sqs._batching import Batcher

import unibus


class FakeSQS:
    """DeleteMessageBatch that records its calls and is released by the test."""

    def __init__(self, fail: set[str] = frozenset(), error: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.error = error
        self.gate = asyncio.Event()
        self.gate.set()
        self.called = asyncio.Condition()

    async def made(self, n: int) -> None:
        """Wait until ``n`` calls were made."""
        async with self.called:
            await self.called.wait_for(lambda: len(self.calls) >= n)

    async def send(self, url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([e["ReceiptHandle"] for e in entries])
        async with self.called:
            self.called.notify_all()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {
            "Successful": [{"Id": e["Id"]} for e in entries if e["ReceiptHandle"] not in self.fail],
            "Failed": [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "Message": "bad"}
                       for e in entries if e["ReceiptHandle"] in self.fail],
        }


async def test_acks_of_one_tick_share_batches_of_ten() -> None:
    sqs = FakeSQS()
    batcher = Batcher(sqs.send, "delete")
    await asyncio.gather(*(batcher.submit("q", {"ReceiptHandle": f"r{i}"}) for i in range(25)))
    assert sorted(len(c) for c in sqs.calls) == [5, 10, 10]
    assert sorted(h for c in sqs.calls for h in c) == sorted(f"r{i}" for i in range(25))


async def test_a_lone_ack_goes_out_at_once() -> None:
    sqs = FakeSQS()
    batcher = Batcher(sqs.send, "delete")
    await batcher.submit("q", {"ReceiptHandle": "r0"})
    await batcher.submit("q", {"ReceiptHandle": "r1"})
    assert sqs.calls == [["r0"], ["r1"]]


async def test_acks_made_while_calls_are_out_go_together_when_one_returns() -> None:
    sqs = FakeSQS()
    sqs.gate.clear()
    batcher = Batcher(sqs.send, "delete", max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit("q", {"ReceiptHandle": "a"}))
    await sqs.made(1)
    later = [asyncio.ensure_future(batcher.submit("q", {"ReceiptHandle": f"b{i}"}))
             for i in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert sqs.calls == [["a"]]  # the others wait for the call in flight
    assert not first.done()  # and no ack returns before the broker answered
    sqs.gate.set()
    await asyncio.gather(first, *later)
    assert sqs.calls == [["a"], ["b0", "b1", "b2"]]


async def test_a_refused_entry_fails_only_its_own_ack() -> None:
    sqs = FakeSQS(fail={"r3"})
    batcher = Batcher(sqs.send, "delete")
    results = await asyncio.gather(
        *(batcher.submit("q", {"ReceiptHandle": f"r{i}"}) for i in range(5)),
        return_exceptions=True)
    assert [type(r) for r in results] == [type(None)] * 3 + [unibus.SettlementError, type(None)]
    assert "ReceiptHandleIsInvalid" in str(results[3])


async def test_a_failed_call_fails_every_ack_it_carried() -> None:
    sqs = FakeSQS(error=unibus.SettlementError("acknowledging failed: broker down"))
    batcher = Batcher(sqs.send, "delete")
    results = await asyncio.gather(
        *(batcher.submit("q", {"ReceiptHandle": f"r{i}"}) for i in range(3)),
        return_exceptions=True)
    assert all(isinstance(r, unibus.SettlementError) for r in results)


async def test_queues_are_batched_apart_and_close_waits_for_calls_in_flight() -> None:
    sqs = FakeSQS()
    sqs.gate.clear()
    batcher = Batcher(sqs.send, "delete")
    acks = [asyncio.ensure_future(batcher.submit(url, {"ReceiptHandle": f"{url}{i}"}))
            for url in ("q1", "q2") for i in range(2)]
    await sqs.made(2)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    assert not closing.done()
    sqs.gate.set()
    await closing
    assert all(a.done() and a.exception() is None for a in acks)
    assert sorted(sqs.calls) == [["q10", "q11"], ["q20", "q21"]]


@pytest.mark.parametrize("n", [1, 10, 11])
async def test_every_ack_returns(n: int) -> None:
    sqs = FakeSQS()
    batcher = Batcher(sqs.send, "delete", max_in_flight=2)
    await asyncio.gather(*(batcher.submit("q", {"ReceiptHandle": f"r{i}"}) for i in range(n)))
    assert sum(len(c) for c in sqs.calls) == n
