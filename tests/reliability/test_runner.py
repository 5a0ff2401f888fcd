import asyncio
import contextlib
import logging
from pathlib import Path

import pydantic
import pytest

import unibus
from unibus import deadletter
from unibus.reliability import (
    BreakerState,
    CircuitBreaker,
    DeadLetterEvent,
    FixedBackoff,
    MemoryStore,
    PermanentError,
    RetryPolicy,
    SQLiteStore,
    Subscription,
)

FAST = RetryPolicy(max_attempts=3, backoff=FixedBackoff((0.05, 0.1)))


async def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)  # polling interval


async def dead_letters(bus: unibus.Bus, topic: str, group: str, n: int) -> list[unibus.DeadLetter]:
    dlq = bus.dead_letter_queue(topic, group)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while len(found := await dlq.list()) < n:
        assert loop.time() < deadline, f"only {len(found)} dead letters"
        await asyncio.sleep(0.02)
    return found


async def test_transient_failures_are_retried_then_succeed(bus: unibus.Bus) -> None:
    attempts: list[int] = []

    async def flaky(message: unibus.Message) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("payment gateway timeout")

    sub = await bus.subscribe("pay", flaky, group="payments", policy=FAST)
    await bus.publish("pay", b"order-1")
    await wait_until(lambda: sub.stats.processed == 1)
    await sub.stop()
    assert sub.stats.retried == 2
    assert sub.stats.dead_lettered == 0
    assert await bus.dead_letter_queue("pay", "payments").list() == []


async def test_permanent_errors_go_straight_to_the_dlq_with_context(
    bus: unibus.Bus, caplog: pytest.LogCaptureFixture
) -> None:
    alerts: list[DeadLetterEvent] = []

    async def reject(message: unibus.Message) -> None:
        raise PermanentError("quantity must be positive")

    caplog.set_level(logging.ERROR, "unibus.runner")
    sub = await bus.subscribe("orders", reject, group="validation", policy=FAST,
                              on_dead_letter=alerts.append)
    receipt = await bus.publish("orders", {"qty": -1}, key="o-1")
    [dead] = await dead_letters(bus, "orders", "validation", 1)
    await sub.stop()
    assert dead.message.id == receipt.message_id
    assert dead.attempts == 1
    assert "quantity must be positive" in dead.reason
    headers = dead.message.headers
    assert headers[deadletter.ERROR_TYPE].endswith("PermanentError")
    assert "quantity must be positive" in headers[deadletter.TRACEBACK]
    assert headers[deadletter.ORIGINAL_TOPIC] == "orders"
    assert headers[deadletter.ORIGINAL_KEY] == "o-1"
    assert headers[deadletter.FIRST_FAILURE] <= headers[deadletter.LAST_FAILURE]
    assert [a.message.id for a in alerts] == [receipt.message_id]
    assert any(r.message.startswith("dlq_send topic=orders") for r in caplog.records)


async def test_budget_is_one_counter_across_redeliveries(bus: unibus.Bus) -> None:
    seen_attempts: list[int] = []

    async def always_down(message: unibus.Message) -> None:
        raise TimeoutError("inventory service down")

    sub = await bus.subscribe("stock", always_down, group="inventory", policy=FAST)
    sub.handler = lambda m: _record_and_fail(m, seen_attempts)
    await bus.publish("stock", b"sku-1")
    [dead] = await dead_letters(bus, "stock", "inventory", 1)
    await sub.stop()
    assert dead.attempts == 3
    assert "gave up after 3 attempts" in dead.reason
    assert sub.stats.retried == 2


async def _record_and_fail(message: unibus.Message, seen: list[int]) -> None:
    seen.append(1)
    raise TimeoutError("inventory service down")


async def test_a_waiting_retry_does_not_block_other_messages(bus: unibus.Bus) -> None:
    order: list[bytes] = []

    async def handler(message: unibus.Message) -> None:
        if message.body == b"slow" and b"slow-failed" not in order:
            order.append(b"slow-failed")
            raise ConnectionError("retry later")
        order.append(message.body)

    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff((2.0,)))
    sub = await bus.subscribe("mixed", handler, group="g", policy=policy, concurrency=1)
    await bus.publish("mixed", b"slow", key="a")
    await wait_until(lambda: b"slow-failed" in order)
    for i in range(3):
        await bus.publish("mixed", f"fast{i}".encode(), key=f"k{i}")
    await wait_until(lambda: b"slow" in order)
    await sub.stop()
    assert order == [b"slow-failed", b"fast0", b"fast1", b"fast2", b"slow"]


async def test_poison_messages_are_recognised_across_restarts(
    bus: unibus.Bus, tmp_path: Path
) -> None:
    store = await SQLiteStore.open(tmp_path / "idem.db")
    policy = RetryPolicy(max_attempts=10, backoff=FixedBackoff((0.05,)))

    async def crash(message: unibus.Message) -> None:
        raise RuntimeError("segfault in parser")

    first = await bus.subscribe("feed", crash, group="parser", policy=policy,
                                idempotency=store, poison_threshold=3)
    await bus.publish("feed", b"\xff\xfe")
    await wait_until(lambda: first.stats.failed >= 2)
    await first.stop()
    second = await bus.subscribe("feed", crash, group="parser", policy=policy,
                                 idempotency=store, poison_threshold=3)
    [dead] = await dead_letters(bus, "feed", "parser", 1)
    await second.stop()
    await store.close()
    assert "poison message: failed 3 times" in dead.reason
    assert first.stats.failed + second.stats.failed == 3


async def test_idempotent_consumer_processes_duplicates_once() -> None:
    async with unibus.connect("memory://", dedup_window=0) as bus:
        processed: list[str] = []

        async def handler(message: unibus.Message) -> None:
            processed.append(message.id)

        sub = await bus.subscribe("charges", handler, group="billing", idempotency=MemoryStore())
        message = unibus.Message(body=b"charge 10 EUR")
        for _ in range(3):
            await bus.publish("charges", message)
        await wait_until(lambda: sub.stats.processed + sub.stats.duplicates == 3)
        await sub.stop()
        assert processed == [message.id]
        assert sub.stats.duplicates == 2


async def test_circuit_breaker_pauses_consumption_while_open(bus: unibus.Bus) -> None:
    dependency_up = False
    calls = 0

    async def handler(message: unibus.Message) -> None:
        nonlocal calls
        calls += 1
        if not dependency_up:
            raise ConnectionError("database unavailable")

    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=1.0, name="db")
    policy = RetryPolicy(max_attempts=50, backoff=FixedBackoff((0.01,)))
    sub = await bus.subscribe("writes", handler, group="g", policy=policy, breaker=breaker,
                              concurrency=1)
    await bus.publish_many("writes", [f"w{i}".encode() for i in range(5)])
    await wait_until(lambda: breaker.state is BreakerState.OPEN)
    calls_when_opened = calls
    dependency_up = True
    await wait_until(lambda: sub.stats.processed == 5)
    await sub.stop()
    assert calls_when_opened == 3, "the breaker opened after 3 failures"
    assert breaker.transitions[:3] == [BreakerState.OPEN, BreakerState.HALF_OPEN,
                                       BreakerState.CLOSED]
    assert sub.stats.dead_lettered == 0


async def test_a_breaker_wait_cancelled_as_it_ends_raises_the_cancellation() -> None:
    # Python 3.11's asyncio.wait_for returns when the cancellation arrives as the awaited
    # wait completes; a worker that Subscription.stop() cancelled then carried on, and could
    # wait for a half-open probe slot forever.
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30.0)
    await breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    acquiring = asyncio.create_task(breaker.acquire())
    await wait_until(lambda: breaker._changed._waiters)  # waiting for the reset timeout
    await breaker.record_success()  # the wait ends in this turn of the loop ...
    acquiring.cancel()  # ... and the cancellation arrives in the same one
    with pytest.raises(asyncio.CancelledError):
        await acquiring


class Order(pydantic.BaseModel):
    id: int
    total: float


async def test_handlers_can_receive_decoded_models(bus: unibus.Bus) -> None:
    got: list[Order] = []

    async def handler(order: Order) -> None:
        got.append(order)

    sub = await bus.subscribe("typed", handler, group="g", into=Order)
    await bus.publish("typed", Order(id=1, total=9.5))
    await wait_until(lambda: len(got) == 1)
    await sub.stop()
    assert got == [Order(id=1, total=9.5)]


async def test_undecodable_bodies_are_dead_lettered_not_retried(bus: unibus.Bus) -> None:
    async def handler(order: Order) -> None:
        raise AssertionError("never called")

    sub = await bus.subscribe("typed-bad", handler, group="g", into=Order, policy=FAST)
    await bus.publish("typed-bad", {"id": "not-a-number"})
    [dead] = await dead_letters(bus, "typed-bad", "g", 1)
    await sub.stop()
    assert dead.attempts == 1
    assert "SerializationError" in dead.reason


async def test_subscribe_refuses_bad_arguments(bus: unibus.Bus) -> None:
    async def handler(message: unibus.Message) -> None:
        return None

    with pytest.raises(unibus.ConfigError):
        await bus.subscribe("t", handler, concurrency=0)
    with pytest.raises(unibus.ConfigError):
        RetryPolicy(max_attempts=0)


async def test_stop_does_not_hang_on_a_handler_that_swallows_its_cancellation(
    bus: unibus.Bus, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unibus import _tasks

    monkeypatch.setattr(_tasks, "STOP_GRACE", 0.2)
    release = asyncio.Event()
    started = asyncio.Event()

    async def stubborn(message: unibus.Message) -> None:
        started.set()
        while not release.is_set():
            # The handler's bug: it swallows its cancellation; stop() must still return.
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    sub = await bus.subscribe("stuck", stubborn, group="g", policy=FAST)
    await bus.publish("stuck", b"x")
    await asyncio.wait_for(started.wait(), 15)
    with caplog.at_level(logging.WARNING, logger="unibus"):
        async with asyncio.timeout(30):
            await sub.stop(drain_timeout=0.1)
    assert "still running" in caplog.text
    assert "after being cancelled" in caplog.text
    release.set()  # let the handler end, so the test leaves nothing behind
    await asyncio.sleep(0.05)


async def recording(bus: unibus.Bus, concurrency: int) -> tuple[Subscription, list[bytes]]:
    """A subscription to "orders" (group "billing") whose handler records each body."""
    seen: list[bytes] = []

    async def handler(message: unibus.Message) -> None:
        seen.append(message.body)

    sub = await bus.subscribe("orders", handler, group="billing", policy=FAST,
                              concurrency=concurrency)
    return sub, seen


async def test_a_consumer_that_fails_for_good_is_reported_and_replaced(
    bus: unibus.Bus, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub, seen = await recording(bus, concurrency=4)
    await bus.publish("orders", b"before")
    await wait_until(lambda: seen == [b"before"])
    first = sub.consumer
    # The first attempt to subscribe again fails too (the broker is still away).
    consumer = bus.consumer
    refusals = [unibus.ConnectionFailedError("the broker is still away")]

    async def reopening(*args: object, **kwargs: object) -> unibus.Consumer:
        if refusals:
            raise refusals.pop()
        return await consumer(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bus, "consumer", reopening)
    with caplog.at_level(logging.WARNING, logger="unibus"):
        # What a backend does when it gives up resuming, or the broker cancels consumption.
        first._fail(unibus.ConsumeError("the broker cancelled consumption"))  # type: ignore[attr-defined]
        await wait_until(lambda: sub.stats.resubscribed == 1)
        await bus.publish("orders", b"after")
        await wait_until(lambda: seen == [b"before", b"after"])
    assert sub.consumer is not first
    assert isinstance(sub.error, unibus.ConsumeError)
    assert caplog.text.count("subscription_failed") == 1
    assert "topics=orders group=billing error=ConsumeError" in caplog.text
    assert "subscribing again" in caplog.text
    assert caplog.text.count("subscription_resubscribe_failed") == 1
    assert caplog.text.count("subscription_resubscribed") == 1
    await sub.stop()


async def test_without_reopen_a_failed_consumer_stops_the_subscription(
    bus: unibus.Bus, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(message: unibus.Message) -> None:
        return None

    consumer = await bus.consumer("orders", group="billing")
    sub = Subscription(consumer, handler, policy=FAST, concurrency=4).start()
    with caplog.at_level(logging.ERROR, logger="unibus"):
        consumer._fail(unibus.ConsumeError("the broker cancelled consumption"))  # type: ignore[attr-defined]
        await wait_until(lambda: all(w.done() for w in sub._workers))
    assert isinstance(sub.error, unibus.ConsumeError)
    assert caplog.text.count("subscription_failed") == 1
    assert "subscribing again" not in caplog.text
    await sub.stop()


async def test_stop_ends_a_subscription_that_is_subscribing_again(
    bus: unibus.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub, _ = await recording(bus, concurrency=2)

    async def refused(*args: object, **kwargs: object) -> unibus.Consumer:
        raise unibus.ConnectionFailedError("the broker is away")

    monkeypatch.setattr(bus, "consumer", refused)
    sub.consumer._fail(unibus.ConsumeError("gone"))  # type: ignore[attr-defined]
    await wait_until(lambda: sub._reopening is not None)
    async with asyncio.timeout(15):
        await sub.stop()
    assert sub._reopening is not None
    assert sub._reopening.done()
    assert sub.stats.resubscribed == 0


async def test_a_failed_settlement_inside_receive_does_not_stop_the_subscription(
    bus: unibus.Bus, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub, seen = await recording(bus, concurrency=2)
    receive = sub.consumer.receive
    failures = [unibus.SettlementError("dead-lettering an over-limit message failed")] * 2

    async def flaky(timeout: float | None = None) -> unibus.Delivery:
        if failures:
            raise failures.pop()
        return await receive(timeout)

    monkeypatch.setattr(sub.consumer, "receive", flaky)
    with caplog.at_level(logging.WARNING, logger="unibus"):
        await bus.publish("orders", b"after")
        await wait_until(lambda: seen == [b"after"])
    assert sub.error is None
    assert caplog.text.count("receive_settlement_failed") == 2
    await sub.stop()
