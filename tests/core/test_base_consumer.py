"""BaseConsumer's buffer, waiters and settle paths, with a backend that records its hooks."""

from __future__ import annotations

import asyncio

import pytest

from unibus.backends._engine.capabilities import declare
from unibus.backends._engine.options import EmbeddedOptions
from unibus.base import BaseConsumer, BaseDelivery
from unibus.errors import AlreadySettledError, ClosedError, ConsumeError, OperationTimeoutError
from unibus.message import Message


class Recording(BaseConsumer):
    backend_name = "recording"

    def __init__(self, *, quick: bool = False, max_attempts: int | None = None) -> None:
        super().__init__(["t"], "g", capabilities=declare(EmbeddedOptions(), durable=False),
                         max_attempts=max_attempts)
        self.calls: list[tuple[str, str]] = []
        self.released: list[str] = []
        if quick:
            self._ack_now = self._note

    def _note(self, delivery: BaseDelivery) -> None:
        self.calls.append(("ack_now", delivery.message.key or ""))

    async def _ack(self, delivery: BaseDelivery) -> None:
        self.calls.append(("ack", delivery.message.key or ""))

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        self.calls.append(("nack", delivery.message.key or ""))

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        self.calls.append(("dead_letter", delivery.message.key or ""))

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        self.released += [d.message.key or "" for d in deliveries]

    def make(self, key: str, attempt: int = 1) -> BaseDelivery:
        return BaseDelivery(self, Message(body=b"x", key=key), topic="t", attempt=attempt)


async def test_push_many_keeps_order_and_wakes_a_waiting_receiver() -> None:
    consumer = Recording()
    waiting = asyncio.create_task(consumer.receive_batch(10, timeout=5))
    await asyncio.sleep(0)
    consumer._push_many([consumer.make(k) for k in "abc"])
    consumer._push(consumer.make("d"))
    batch = await waiting
    assert [d.message.key for d in batch] == ["a", "b", "c", "d"]
    assert consumer._buffered() == 0
    await consumer.close(drain_timeout=0)
    assert sorted(consumer.released) == ["a", "b", "c", "d"]  # unsettled at close


async def test_timed_out_and_cancelled_receivers_leave_nothing_behind() -> None:
    consumer = Recording()
    for _ in range(50):
        with pytest.raises(OperationTimeoutError, match=r"within 0\.001s"):
            await consumer.receive(timeout=0.001)
    cancelled = asyncio.create_task(consumer.receive())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert consumer._waiters == []
    consumer._push(consumer.make("a"))  # reaches the next receiver, not the cancelled one
    assert (await consumer.receive(timeout=1)).message.key == "a"
    await consumer.close(drain_timeout=0)


async def test_every_waiting_receiver_gets_a_pushed_delivery_or_keeps_waiting() -> None:
    consumer = Recording()
    receivers = [asyncio.create_task(consumer.receive(timeout=5)) for _ in range(3)]
    await asyncio.sleep(0)
    consumer._push_many([consumer.make("a"), consumer.make("b")])
    done, pending = await asyncio.wait(receivers, timeout=0.5)
    assert sorted(t.result().message.key or "" for t in done) == ["a", "b"]
    assert len(pending) == 1
    consumer._push(consumer.make("c"))
    assert (await pending.pop()).message.key == "c"
    await consumer.close(drain_timeout=0)


async def test_fail_hands_out_what_is_buffered_then_raises_for_every_receiver() -> None:
    consumer = Recording()
    consumer._push(consumer.make("a"))
    consumer._fail(ConsumeError("broker went away"))
    assert (await consumer.receive(timeout=1)).message.key == "a"
    results = await asyncio.gather(consumer.receive(), consumer.receive(),
                                   return_exceptions=True)
    assert all(isinstance(r, ConsumeError) for r in results)


async def test_close_wakes_waiting_receivers_and_releases_the_buffer() -> None:
    consumer = Recording()
    waiting = asyncio.create_task(consumer.receive())
    await asyncio.sleep(0)
    await consumer.close(drain_timeout=0)
    with pytest.raises(ClosedError):
        await waiting
    consumer2 = Recording()
    consumer2._push_many([consumer2.make("a"), consumer2.make("b")])
    await consumer2.close(drain_timeout=0)
    assert consumer2.released == ["a", "b"]
    with pytest.raises(ClosedError):
        await consumer2.receive(timeout=1)


async def test_drop_buffered_keeps_order_and_returns_the_rest() -> None:
    consumer = Recording()
    consumer._push_many([consumer.make(k) for k in "abcde"])
    dropped = consumer._drop_buffered(lambda d: d.message.key in ("a", "c", "e"))
    assert [d.message.key for d in dropped] == ["b", "d"]
    assert [d.message.key for d in consumer._take_buffered()] == ["a", "c", "e"]
    assert consumer._buffered() == 0
    await consumer.close(drain_timeout=0)


async def test_synchronous_ack_settles_once_and_drains() -> None:
    consumer = Recording(quick=True)
    consumer._push_many([consumer.make("a"), consumer.make("b")])
    first, second = await consumer.receive_batch(2, timeout=1)
    await first.ack()
    with pytest.raises(AlreadySettledError):
        await first.ack()
    await second.nack()  # everything but ack still goes through the async hooks
    assert consumer.calls == [("ack_now", "a"), ("nack", "b")]
    assert consumer._drained.is_set()
    consumer._push(consumer.make("c"))
    late = await consumer.receive(timeout=1)
    await consumer.close(drain_timeout=0)
    with pytest.raises(ClosedError):
        await late.ack()  # after close the ack cannot reach the broker any more
    assert ("ack_now", "c") not in consumer.calls


async def test_poisoned_deliveries_are_dead_lettered_not_handed_out() -> None:
    consumer = Recording(max_attempts=2)
    consumer._push_many([consumer.make("a", attempt=3), consumer.make("b", attempt=2)])
    batch = await consumer.receive_batch(10, timeout=1)
    assert [d.message.key for d in batch] == ["b"]
    assert consumer.calls == [("dead_letter", "a")]
    await consumer.close(drain_timeout=0)
