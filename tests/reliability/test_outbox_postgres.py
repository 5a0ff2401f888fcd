"""The PostgreSQL outbox against the launcher's server: messages exist if and only if the
business change committed; the relay publishes them through a bus at-least-once, in order per
key, and a relay that crashes is taken over without losing anything."""

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

import unibus
from unibus.reliability.outbox import OutboxRelay
from unibus.reliability.outbox_postgres import PostgresOutbox

KEYS = ("customer-1", "customer-2", "customer-3")


async def place_orders(app: Any, schema: str, count: int, *, fail_every: int = 0) -> list[str]:
    """One transaction per order: the order row and its message; every ``fail_every``-th
    transaction rolls back. Returns the bodies that committed."""
    committed = []
    for i in range(count):
        key = KEYS[i % len(KEYS)]
        body = f"{key}/o{i}"
        with contextlib.suppress(RuntimeError):
            async with app.transaction():
                await app.execute(f'INSERT INTO "{schema}".orders VALUES ($1, $2)', body, key)
                await PostgresOutbox.add(app, "orders.placed",
                                         unibus.Message(body=body.encode(), key=key),
                                         schema=schema)
                if fail_every and i % fail_every == fail_every - 1:
                    raise RuntimeError("payment declined")
            committed.append(body)
    return committed


async def receive_all(consumer: Any, count: int) -> list[str]:
    got = []
    for _ in range(count):
        delivery = await consumer.receive(timeout=5)
        got.append(delivery.message.body.decode())
        assert delivery.message.key == got[-1].split("/")[0]
        await delivery.ack()
    return got


def per_key(bodies: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for body in bodies:
        found.setdefault(body.split("/")[0], []).append(body)
    return found


@pytest.fixture
async def app(postgres_url: str, schema: str) -> Any:
    conn = await asyncpg.connect(postgres_url)
    await PostgresOutbox.create_table(conn, schema=schema)
    await conn.execute(f'CREATE TABLE "{schema}".orders (id TEXT PRIMARY KEY, customer TEXT)')
    yield conn
    await conn.close()


async def test_committed_changes_are_relayed_in_order_per_key(
        app: Any, postgres_url: str, schema: str) -> None:
    committed = await place_orders(app, schema, 30, fail_every=4)
    assert len(committed) == 23
    assert await app.fetchval(f'SELECT count(*) FROM "{schema}".unibus_outbox') == 23

    async with unibus.connect("memory://") as bus:
        consumer = await bus.consumer("orders.placed", group="g")
        outbox = await PostgresOutbox.open(postgres_url, schema=schema)
        try:
            relay = OutboxRelay(outbox, bus, batch_size=7)
            while await relay.run_once():
                pass
            assert relay.published == 23
            got = await receive_all(consumer, 23)
        finally:
            await outbox.close()
    assert sorted(got) == sorted(committed), "rolled-back orders left no message"
    assert per_key(got) == per_key(committed)
    assert await app.fetchval(f'SELECT count(*) FROM "{schema}".unibus_outbox') == 0


class Recording:
    """Publishes through ``bus`` and records what the broker acknowledged, in order."""

    def __init__(self, bus: unibus.Bus, published: list[str]) -> None:
        self.bus = bus
        self.published = published

    async def publish_many(self, topic: str, bodies: Sequence[Any]) -> Any:
        result = await self.bus.publish_many(topic, bodies)
        self.published.extend(message.body.decode() for message in bodies)
        return result


class CrashAfterPublishing(Recording):
    """A bus through which the relay's process 'dies' right after the broker acknowledged
    its ``batches``-th batch, before the relay could delete it from the outbox."""

    def __init__(self, bus: unibus.Bus, published: list[str], batches: int) -> None:
        super().__init__(bus, published)
        self.batches = batches
        self.crashed = asyncio.Event()

    async def publish_many(self, topic: str, bodies: Sequence[Any]) -> Any:
        result = await super().publish_many(topic, bodies)
        self.batches -= 1
        if self.batches == 0:
            self.crashed.set()
            await asyncio.Event().wait()  # hangs until the task is cancelled
        return result


async def test_a_crashed_relay_is_taken_over_without_losing_messages(
        app: Any, postgres_url: str, schema: str) -> None:
    committed = await place_orders(app, schema, 20)
    async with unibus.connect("memory://") as bus:
        consumer = await bus.consumer("orders.placed", group="g")
        first = await PostgresOutbox.open(postgres_url, schema=schema)
        published: list[str] = []
        crashing = CrashAfterPublishing(bus, published, batches=2)
        task = asyncio.create_task(OutboxRelay(first, crashing, batch_size=5).run())
        await asyncio.wait_for(crashing.crashed.wait(), 10)

        # While the first relay lives it holds the table: a second one stands by.
        second = await PostgresOutbox.open(postgres_url, schema=schema)
        try:
            assert await second.pending(100) == []
            # The crash: the task dies and its connection goes with it (as with SIGKILL).
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            first._conn.terminate()

            relay = OutboxRelay(second, Recording(bus, published), batch_size=5)

            async def drained() -> bool:
                await relay.run_once()
                return await app.fetchval(
                    f'SELECT count(*) FROM "{schema}".unibus_outbox') == 0

            deadline = asyncio.get_running_loop().time() + 10
            while not await drained():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            # The memory broker drops a message id it has seen; consumers get each once.
            got = await receive_all(consumer, 20)
            with pytest.raises(unibus.OperationTimeoutError):
                await consumer.receive(timeout=0.3)
        finally:
            await second.close()
            await first.close()
    assert sorted(got) == sorted(committed)
    # Batch 2 was acknowledged by the broker but not deleted: it was published again.
    assert len(published) == 25
    assert set(published) == set(committed), "nothing lost"
    duplicates = sorted(body for body in set(published) if published.count(body) > 1)
    assert duplicates == sorted(committed[5:10]), "only the unconfirmed batch is repeated"
    for key, bodies in per_key(published).items():
        assert list(dict.fromkeys(bodies)) == per_key(committed)[key], "in order per key"


async def test_the_relay_loop_retries_while_postgres_is_unreachable(
        app: Any, postgres_url: str, schema: str) -> None:
    committed = await place_orders(app, schema, 3)
    outbox = await PostgresOutbox.open(postgres_url, schema=schema)
    async with unibus.connect("memory://") as bus:
        consumer = await bus.consumer("orders.placed", group="g")
        relay = OutboxRelay(outbox, bus, interval=0.01)
        outbox._conn.terminate()
        outbox._dsn = "postgresql://postgres@127.0.0.1:1/unibus"  # the server is gone
        with pytest.raises(unibus.ConnectionFailedError):
            await relay.run_once()
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(0.05)  # let the loop fail (and log) a few times
        assert not task.done(), "a lost database does not end the relay"
        outbox._dsn = postgres_url  # the server is back: the loop reconnects and relays
        got = await receive_all(consumer, 3)
        relay.stop()
        await task
    assert got == committed
    await outbox.close()
    with pytest.raises(unibus.ClosedError):
        await outbox.pending(1)


@pytest.mark.parametrize(("topic", "message", "error"), [
    ("", unibus.Message(body=b"x"), unibus.ConfigError),
    (None, unibus.Message(body=b"x"), unibus.ConfigError),
    ("t\x00", unibus.Message(body=b"x"), unibus.InvalidMessageError),
    ("t", unibus.Message(body=b"x", key="a\x00b"), unibus.InvalidMessageError),
    ("t", unibus.Message(body=b"x", key="\ud800"), unibus.InvalidMessageError),
    ("t", b"not a message", unibus.InvalidMessageError),
])
async def test_bad_input_to_add_is_refused_with_typed_errors(
        app: Any, schema: str, topic: Any, message: Any, error: type[Exception]) -> None:
    async with app.transaction():
        with pytest.raises(error):
            await PostgresOutbox.add(app, topic, message, schema=schema)
    assert await app.fetchval(f'SELECT count(*) FROM "{schema}".unibus_outbox') == 0


async def test_odd_but_valid_messages_round_trip(app: Any, postgres_url: str,
                                                 schema: str) -> None:
    message = unibus.Message(body=bytes(range(256)), key="grüße 🚌",
                             headers={"note": "\x00 and ü", "empty": ""})
    async with app.transaction():
        await PostgresOutbox.add(app, "odd.topic/ü", message, schema=schema)
    outbox = await PostgresOutbox.open(postgres_url, schema=schema)
    try:
        [(_, topic, back)] = await outbox.pending(10)
    finally:
        await outbox.close()
    assert topic == "odd.topic/ü"
    assert (back.body, back.key, back.headers, back.id) == (
        message.body, message.key, message.headers, message.id)


async def test_a_missing_table_or_bad_schema_is_a_config_error(app: Any, postgres_url: str,
                                                              schema: str) -> None:
    with pytest.raises(unibus.ConfigError):
        await PostgresOutbox.add(app, "t", unibus.Message(body=b"x"), schema=schema + "_no")
    with pytest.raises(unibus.ConfigError):
        await PostgresOutbox.open(postgres_url, schema="bad-name")
