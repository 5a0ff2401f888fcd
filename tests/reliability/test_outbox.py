import asyncio
from pathlib import Path

import aiosqlite
import pytest

import unibus
from unibus.reliability.outbox import OutboxRelay
from unibus.reliability.outbox_sqlite import SQLiteOutbox


async def test_outbox_publishes_committed_changes_only_and_in_order(tmp_path: Path) -> None:
    path = str(tmp_path / "shop.db")
    async with aiosqlite.connect(path, isolation_level=None) as app:
        await app.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, total REAL)")
        await SQLiteOutbox.create_table(app)
        for i in range(5):
            await app.execute("BEGIN")
            await app.execute("INSERT INTO orders VALUES (?, ?)", (f"o{i}", 10.0 * i))
            await SQLiteOutbox.add(app, "orders.placed",
                                   unibus.Message(body=f"o{i}".encode(), key="customer-1"))
            await app.execute("ROLLBACK" if i == 2 else "COMMIT")

    async with unibus.connect("memory://") as bus:
        consumer = await bus.consumer("orders.placed", group="g")
        outbox = await SQLiteOutbox.open(path)
        relay = OutboxRelay(outbox, bus)
        assert await relay.run_once() == 4
        assert await relay.run_once() == 0
        got = []
        for _ in range(4):  # one key: the next is handed out once the previous is settled
            got.append(await consumer.receive(timeout=5))
            await got[-1].ack()
        assert [d.message.body for d in got] == [b"o0", b"o1", b"o3", b"o4"]
        assert all(d.message.key == "customer-1" for d in got)
        await outbox.close()


async def test_a_failed_publish_keeps_the_records(tmp_path: Path) -> None:
    outbox = await SQLiteOutbox.open(str(tmp_path / "o.db"))
    async with aiosqlite.connect(str(tmp_path / "o.db"), isolation_level=None) as app:
        await SQLiteOutbox.add(app, "t", unibus.Message(body=b"x" * (2 << 20)))

    async with unibus.connect("memory://") as bus:
        relay = OutboxRelay(outbox, bus, interval=0.01)
        with pytest.raises(unibus.MessageTooLargeError):
            await relay.run_once()
        assert len(await outbox.pending(10)) == 1
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(0.05)  # let the relay loop try (and log) a few times
        relay.stop()
        await task
        assert len(await outbox.pending(10)) == 1
    await outbox.close()
