"""A server store outlives its server's crash: while the server is down every call fails
with a typed error, and once it is back the same store object works again, with what was
acknowledged before the crash still there.

Private servers (own state dir, own ports) so the shared ones are never disturbed.
"""

import asyncio
import random
from collections.abc import Iterator

import pytest

import unibus
from unibus.devstack import DevStack, _process
from unibus.reliability.idempotency import IdempotencyStore
from unibus.reliability.postgres_store import PostgresStore
from unibus.reliability.redis_store import RedisStore

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    """A loopback port nobody listens on, so parallel runs of these tests do not collide."""
    while True:
        port = random.randrange(20000, 32000)  # below the ephemeral range
        if not _process.port_open(port):
            return port


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    ports = {"redis": {"client": free_port()}, "postgres": {"client": free_port()}}
    stack = DevStack(tmp_path_factory.mktemp("stores") / "dev", ports=ports)
    try:
        yield stack
    finally:
        stack.down()


async def open_store(kind: str, url: str) -> IdempotencyStore:
    if kind == "redis":
        return await RedisStore.open(url, prefix="restart:")
    return await PostgresStore.open(url, schema="restart")


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_a_store_works_again_after_its_server_is_killed(private: DevStack,
                                                              kind: str) -> None:
    [status] = await asyncio.to_thread(private.up, [kind])
    store = await open_store(kind, status.url)
    try:
        assert await store.claim("paid", 30) == "new"
        await store.complete("paid")
        assert (await store.record_failure("flaky")).count == 1
        assert await store.claim("working", 30) == "new"

        await asyncio.to_thread(private.stop, kind, kill=True)
        with pytest.raises(unibus.ConnectionFailedError):
            await store.claim("during-the-outage", 30)

        await asyncio.to_thread(private.start, kind)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:  # the first call after the restart may still meet a dead connection
            try:
                result = await store.claim("paid", 30)
                break
            except unibus.ConnectionFailedError:
                assert loop.time() < deadline, "the store did not reconnect"
                await asyncio.sleep(0.2)
        assert result == "done", "a completion acknowledged before the crash survives it"
        assert (await store.record_failure("flaky")).count == 2
        assert await store.claim("working", 30) == "busy", "a live claim survives too"
    finally:
        await store.close()

