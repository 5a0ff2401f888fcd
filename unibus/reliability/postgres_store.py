"""Idempotency store on PostgreSQL (``pip install 'unibus[postgres]'``, asyncpg)."""

from __future__ import annotations

import time
from typing import Any

from unibus.errors import BackendNotInstalledError
from unibus.reliability.idempotency import ClaimResult, FailureRecord

__all__ = ["PostgresStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS unibus_processed (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, until DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS unibus_failures (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL,
    first DOUBLE PRECISION NOT NULL, last DOUBLE PRECISION NOT NULL);
"""

# Insert a claim, or take over an expired one; RETURNING tells whether we got it.
_CLAIM = """
INSERT INTO unibus_processed(key, state, until) VALUES ($1, 'busy', $2 + $3)
ON CONFLICT (key) DO UPDATE SET state = 'busy', until = $2 + $3
    WHERE unibus_processed.until <= $2
RETURNING key
"""


class PostgresStore:
    """Open with ``await PostgresStore.open("postgresql://user@127.0.0.1/db")``."""

    def __init__(self, pool: Any, retention: float) -> None:
        self._pool = pool
        self.retention = retention

    @classmethod
    async def open(cls, dsn: str, retention: float = 86400.0) -> PostgresStore:
        try:
            import asyncpg
        except ImportError as exc:
            raise BackendNotInstalledError("postgres", "asyncpg") from exc
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        async with pool.acquire() as conn:
            await conn.execute(_SCHEMA)
        return cls(pool, retention)

    async def claim(self, key: str, lease: float) -> ClaimResult:
        now = time.time()
        async with self._pool.acquire() as conn:
            if await conn.fetchval(_CLAIM, key, now, lease) is not None:
                return "new"
            state = await conn.fetchval(
                "SELECT state FROM unibus_processed WHERE key = $1", key)
        return "done" if state == "done" else "busy"

    async def complete(self, key: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO unibus_processed(key, state, until) VALUES ($1, 'done', $2) "
                "ON CONFLICT (key) DO UPDATE SET state = 'done', until = $2",
                key, time.time() + self.retention)
            await conn.execute("DELETE FROM unibus_failures WHERE key = $1", key)

    async def release(self, key: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM unibus_processed WHERE key = $1 AND state = 'busy'", key)

    async def record_failure(self, key: str) -> FailureRecord:
        now = time.time()
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO unibus_failures(key, count, first, last) VALUES ($1, 1, $2, $2) "
                "ON CONFLICT (key) DO UPDATE SET count = unibus_failures.count + 1, last = $2 "
                "RETURNING count, first, last", key, now)
        return FailureRecord(int(row["count"]), float(row["first"]), float(row["last"]))

    async def close(self) -> None:
        await self._pool.close()
