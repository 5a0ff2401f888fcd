import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from store_servers import drop_schema, server_url, unique_schema

import unibus
from unibus.reliability import MemoryStore, SQLiteStore
from unibus.reliability.idempotency import IdempotencyStore
from unibus.reliability.postgres_store import PostgresStore
from unibus.reliability.redis_store import RedisStore


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
    again = await asyncio.gather(*(store.record_failure("k3") for _ in range(4)))
    assert first.count == 1
    # Concurrent failures may be counted in any order, but none is lost or counted twice.
    assert sorted(record.count for record in again) == [2, 3, 4, 5]
    assert {record.first for record in again} == {first.first}


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


# -- Redis and PostgreSQL (the launcher's servers) ------------------------------------------

async def open_store(kind: str, url: str, name: str, retention: float = 86400.0
                     ) -> IdempotencyStore:
    """A store on ``url`` whose keys (Redis prefix) or tables (PostgreSQL schema) are ``name``'s."""
    if kind == "redis":
        return await RedisStore.open(url, retention=retention, prefix=name)
    return await PostgresStore.open(url, retention=retention, schema=name)


@pytest_asyncio.fixture(params=["redis", "postgres"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, str]]:
    """(kind, url, namespace) for each server store; the namespace is this test's own."""
    kind: str = request.param
    url = await server_url(kind)
    if kind == "redis":
        yield kind, url, f"test:{uuid.uuid4().hex[:12]}:"
        return
    name = unique_schema()
    yield kind, url, name
    await drop_schema(url, name)


async def test_server_store_keeps_the_contract(server: tuple[str, str, str]) -> None:
    store = await open_store(*server)
    try:
        await _exercise(store)
    finally:
        await store.close()


async def test_server_store_survives_a_reopen(server: tuple[str, str, str]) -> None:
    store = await open_store(*server)
    await store.claim("order-1", 30)
    await store.complete("order-1")
    assert (await store.record_failure("order-2")).count == 1
    await store.claim("order-3", 30)
    await store.close()
    reopened = await open_store(*server)
    try:
        assert await reopened.claim("order-1", 30) == "done"
        assert (await reopened.record_failure("order-2")).count == 2
        assert await reopened.claim("order-3", 30) == "busy", "a live claim outlives a reopen"
    finally:
        await reopened.close()


async def test_two_server_stores_claim_each_key_once(server: tuple[str, str, str]) -> None:
    """Two stores stand for two worker processes racing over the same redeliveries."""
    first, second = await open_store(*server), await open_store(*server)
    try:
        keys = [f"m{i}" for i in range(100)]
        results = await asyncio.gather(*(store.claim(key, 30) for key in keys
                                         for store in (first, second)))
        assert results.count("new") == 100
        assert results.count("busy") == 100
        await asyncio.gather(*(first.complete(key) for key in keys))
        assert set(await asyncio.gather(*(second.claim(key, 30) for key in keys))) == {"done"}
    finally:
        await first.close()
        await second.close()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_server_store_forgets_after_the_retention_window(
        server: tuple[str, str, str]) -> None:
    store = await open_store(*server, retention=0.5)
    try:
        await store.claim("paid", 30)
        await store.complete("paid")
        began = time.monotonic()
        assert await store.claim("paid", 30) == "done"

        async def forgotten() -> bool:
            result = await store.claim("paid", 30)
            if result == "new":
                return True
            assert result == "done"
            return False

        await until(forgotten)
        assert time.monotonic() - began >= 0.4, "forgotten no earlier than the window"
        assert (await store.record_failure("flaky")).count == 1
        assert (await store.record_failure("flaky")).count == 2

        async def failures_forgotten() -> bool:
            record = await store.record_failure("flaky")
            return record.count == 1

        await asyncio.sleep(0.6)  # the window must pass without failures for them to reset
        await until(failures_forgotten)
    finally:
        await store.close()


async def test_server_store_takes_any_key(server: tuple[str, str, str]) -> None:
    """Message ids are arbitrary strings: NUL, lone surrogates, non-ASCII, very long."""
    store = await open_store(*server)
    keys = ["", "\x00", "a\x00b", "\ud800", "grüße 🚌", "x" * 100_000, "x" * 100_001]
    try:
        assert await asyncio.gather(*(store.claim(k, 30) for k in keys)) == ["new"] * len(keys)
        for key in keys:
            await store.complete(key)
        assert await asyncio.gather(*(store.claim(k, 30) for k in keys)) == ["done"] * len(keys)
        assert await store.claim("a", 30) == "new", "a\\x00b did not collide with a"
    finally:
        await store.close()


async def test_server_store_refuses_bad_input_with_typed_errors(
        server: tuple[str, str, str]) -> None:
    kind, url, name = server
    store = await open_store(kind, url, name)
    try:
        for lease in (-1, float("nan"), float("inf"), "30", None):
            with pytest.raises(unibus.ConfigError):
                await store.claim("k", lease)  # type: ignore[arg-type]
        for key in (None, 1, b"k"):
            with pytest.raises(unibus.InvalidMessageError):
                await store.claim(key, 30)  # type: ignore[arg-type]
    finally:
        await store.close()
    with pytest.raises(unibus.ClosedError):
        await store.claim("k", 30)
    with pytest.raises(unibus.ConfigError):
        await open_store(kind, url, name, retention=-1)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "http://127.0.0.1:{port}",
                                 "not a url", "redis://127.0.0.1:{port}/100000"])
async def test_redis_store_open_fails_with_typed_errors(url: str, redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(unibus.UnibusError):
        await RedisStore.open(url.format(port=port))


@pytest.mark.parametrize("dsn", ["postgresql://postgres@127.0.0.1:1/unibus", "not a dsn",
                                 "postgresql://postgres@127.0.0.1:{port}/no_such_database",
                                 "postgresql://nobody@127.0.0.1:{port}/unibus",
                                 "postgresql://postgres@127.0.0.1:{port}/unibus?sslmode=bogus"])
async def test_postgres_store_open_fails_with_typed_errors(dsn: str, postgres_url: str) -> None:
    port = postgres_url.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(unibus.UnibusError) as caught:
        await PostgresStore.open(dsn.format(port=port))
    assert isinstance(caught.value, unibus.ConfigError | unibus.ConnectionFailedError)


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", 'x"; DROP TABLE y; --', "a" * 64, 7])
async def test_postgres_store_refuses_a_bad_schema_name(bad: object, postgres_url: str) -> None:
    with pytest.raises(unibus.ConfigError, match="schema"):
        await PostgresStore.open(postgres_url, schema=bad)  # type: ignore[arg-type]


async def test_postgres_marker_written_in_the_applications_transaction(
        postgres_url: str, schema: str) -> None:
    import asyncpg

    store = await PostgresStore.open(postgres_url, schema=schema)
    key = PostgresStore.key("billing", "m-1")
    app = await asyncpg.connect(postgres_url)
    try:
        await app.execute(f'CREATE TABLE "{schema}".charges (id TEXT)')
        with contextlib.suppress(RuntimeError):
            async with app.transaction():
                await app.execute(f"INSERT INTO \"{schema}\".charges VALUES ('m-1')")
                await PostgresStore.mark_done(app, key, schema=schema)
                raise RuntimeError("the handler failed after marking")
        assert await store.claim(key, 30) == "new", "a rolled-back change leaves no marker"
        await store.release(key)
        async with app.transaction():
            await app.execute(f"INSERT INTO \"{schema}\".charges VALUES ('m-1')")
            await PostgresStore.mark_done(app, key, schema=schema)
        assert await store.claim(key, 30) == "done"
        assert await app.fetchval(f'SELECT count(*) FROM "{schema}".charges') == 1
        with pytest.raises(unibus.ConfigError):  # the store's tables are not in that schema
            await PostgresStore.mark_done(app, key, schema=schema + "_missing")
    finally:
        await app.close()
        await store.close()


async def test_server_store_gives_the_runner_effectively_once(
        server: tuple[str, str, str]) -> None:
    """Redeliveries (here: the same message published three times) run the handler once."""
    store = await open_store(*server)
    processed: list[str] = []

    async def handler(message: unibus.Message) -> None:
        processed.append(message.id)

    try:
        async with unibus.connect("memory://", dedup_window=0) as bus:
            sub = await bus.subscribe("charges", handler, group="billing", idempotency=store,
                                      concurrency=4)
            messages = [unibus.Message(body=f"charge {i}".encode()) for i in range(5)]
            for message in messages * 3:
                await bus.publish("charges", message)

            async def settled() -> bool:
                return sub.stats.processed + sub.stats.duplicates == 15

            await until(settled)
            await sub.stop()
        assert sorted(processed) == sorted(m.id for m in messages)
        assert sub.stats.duplicates == 10
    finally:
        await store.close()
