import asyncio
from pathlib import Path

from unibus.reliability import MemoryStore, SQLiteStore
from unibus.reliability.idempotency import IdempotencyStore


async def _exercise(store: IdempotencyStore) -> None:
    results = await asyncio.gather(*(store.claim(f"k{i}", 30) for i in range(50)))
    assert results == ["new"] * 50, "concurrent claims on one store do not interfere"
    assert await store.claim("k1", 30) == "busy"
    await store.complete("k1")
    assert await store.claim("k1", 30) == "done"
    await store.release("k2")
    assert await store.claim("k2", 30) == "new"
    assert await store.claim("expired", 0) == "new"
    assert await store.claim("expired", 30) == "new", "an expired claim can be taken over"
    first = await store.record_failure("k3")
    again = (await asyncio.gather(*(store.record_failure("k3") for _ in range(4))))[-1]
    assert (first.count, again.count) == (1, 5)
    assert again.first == first.first


async def test_memory_store() -> None:
    await _exercise(MemoryStore())


async def test_sqlite_store_is_safe_for_concurrent_workers(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "idem.db")
    try:
        await _exercise(store)
    finally:
        await store.close()


async def test_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "idem.db")
    await store.claim("order-1", 30)
    await store.complete("order-1")
    await store.record_failure("order-2")
    await store.close()
    reopened = await SQLiteStore.open(tmp_path / "idem.db")
    try:
        assert await reopened.claim("order-1", 30) == "done"
        assert (await reopened.record_failure("order-2")).count == 2
    finally:
        await reopened.close()


async def test_marker_written_in_the_applications_transaction(tmp_path: Path) -> None:
    import aiosqlite

    store = await SQLiteStore.open(tmp_path / "app.db")
    key = SQLiteStore.key("billing", "m-1")
    async with aiosqlite.connect(tmp_path / "app.db", isolation_level=None) as app:
        await app.execute("CREATE TABLE charges (id TEXT)")
        await app.execute("BEGIN")
        await app.execute("INSERT INTO charges VALUES ('m-1')")
        await SQLiteStore.mark_done(app, key)
        await app.execute("ROLLBACK")
        assert await store.claim(key, 30) == "new", "a rolled-back change leaves no marker"
        await store.release(key)
        await app.execute("BEGIN")
        await app.execute("INSERT INTO charges VALUES ('m-1')")
        await SQLiteStore.mark_done(app, key)
        await app.execute("COMMIT")
    assert await store.claim(key, 30) == "done"
    await store.close()
