"""Durable idempotency store on SQLite (WAL; several processes on one machine)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosqlite

from unibus.reliability.idempotency import ClaimResult, FailureRecord

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS unibus_processed (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS unibus_failures (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, first REAL NOT NULL, last REAL NOT NULL);
CREATE INDEX IF NOT EXISTS unibus_processed_until ON unibus_processed(until);
"""


class SQLiteStore:
    """Open with ``await SQLiteStore.open(path)``."""

    def __init__(self, db: aiosqlite.Connection, retention: float) -> None:
        self._db = db
        # One connection serves every worker: transactions on it must not interleave.
        self._lock = asyncio.Lock()
        self.retention = retention
        self._last_prune = 0.0

    @classmethod
    async def open(cls, path: str | Path, retention: float = 86400.0) -> SQLiteStore:
        db = await aiosqlite.connect(str(path), isolation_level=None, timeout=30)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA busy_timeout=30000")
        await db.executescript(_SCHEMA)
        return cls(db, retention)

    @staticmethod
    def key(group: str | None, message_id: str) -> str:
        """The key the handler runner claims for a message of ``group``."""
        return f"{group or ''}:{message_id}"

    @staticmethod
    async def mark_done(conn: aiosqlite.Connection, key: str,
                        retention: float = 86400.0) -> None:
        """Record ``key`` as processed on the application's own connection to the store's
        database, inside the transaction that makes the handler's change: the change and
        the marker commit together, so a crash can never leave one without the other and
        a redelivery is recognised as done (effectively-once processing)."""
        await conn.execute(_SCHEMA.split(";")[0])
        await conn.execute(
            "INSERT OR REPLACE INTO unibus_processed(key, state, until) VALUES (?, 'done', ?)",
            (key, time.time() + retention))

    async def claim(self, key: str, lease: float) -> ClaimResult:
        async with self._lock:
            return await self._claim(key, lease)

    async def _claim(self, key: str, lease: float) -> ClaimResult:
        now = time.time()
        await self._prune(now)
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            async with self._db.execute(
                "SELECT state, until FROM unibus_processed WHERE key = ?", (key,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None and row[1] > now:
                await self._db.execute("COMMIT")
                return "done" if row[0] == "done" else "busy"
            await self._db.execute(
                "INSERT OR REPLACE INTO unibus_processed(key, state, until) VALUES (?, 'busy', ?)",
                (key, now + lease),
            )
            await self._db.execute("COMMIT")
            return "new"
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    async def complete(self, key: str) -> None:
        async with self._lock:
            await self._db.execute(
                "INSERT OR REPLACE INTO unibus_processed(key, state, until) "
                "VALUES (?, 'done', ?)", (key, time.time() + self.retention))
            await self._db.execute("DELETE FROM unibus_failures WHERE key = ?", (key,))

    async def release(self, key: str) -> None:
        async with self._lock:
            await self._db.execute(
                "DELETE FROM unibus_processed WHERE key = ? AND state = 'busy'", (key,))

    async def record_failure(self, key: str) -> FailureRecord:
        async with self._lock:
            return await self._record_failure(key)

    async def _record_failure(self, key: str) -> FailureRecord:
        now = time.time()
        await self._db.execute(
            "INSERT INTO unibus_failures(key, count, first, last) VALUES (?, 1, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET count = count + 1, last = excluded.last",
            (key, now, now),
        )
        async with self._db.execute(
            "SELECT count, first, last FROM unibus_failures WHERE key = ?", (key,)
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return FailureRecord(int(row[0]), float(row[1]), float(row[2]))

    async def close(self) -> None:
        await self._db.close()

    async def _prune(self, now: float) -> None:
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        await self._db.execute("DELETE FROM unibus_processed WHERE until <= ?", (now,))
