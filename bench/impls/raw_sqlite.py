"""Raw SQLite: appends with executemany and a cursor-driven read, as an application would
write its own table-as-queue without unibus.

Two readers: :class:`RawSQLite` commits a cursor per batch read (the first baseline: a
message cannot be settled on its own, so it is a lower bar than unibus's per-message ack);
:class:`RawSQLiteAcks` deletes each acknowledged message, its deletes committed once per
batch, which is what one writes by hand for per-message acks with the durability unibus
gives them (acks committed together a moment later, see docs/design/perf-core.md)."""

from __future__ import annotations

import time
from pathlib import Path

import aiosqlite

from bench.impls.base import Impl

BATCH = 1000


class RawSQLite(Impl):
    name = "raw sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: aiosqlite.Connection | None = None

    async def setup(self) -> None:
        self.db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute("PRAGMA synchronous=NORMAL")
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS log (topic TEXT, seq INTEGER, body BLOB, "
            "published REAL, PRIMARY KEY (topic, seq))")
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS cursor (topic TEXT PRIMARY KEY, next INTEGER)")

    async def teardown(self) -> None:
        assert self.db is not None
        await self.db.close()

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        assert self.db is not None
        for start in range(0, count, BATCH):
            rows = [(topic, start + i, payload, time.time())
                    for i in range(min(BATCH, count - start))]
            await self.db.execute("BEGIN IMMEDIATE")
            await self.db.executemany("INSERT INTO log VALUES (?, ?, ?, ?)", rows)
            await self.db.execute("COMMIT")

    async def consume(self, topic: str, count: int) -> None:
        assert self.db is not None
        position = 0
        while position < count:
            async with self.db.execute(
                "SELECT seq, body FROM log WHERE topic = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (topic, position, BATCH)) as cursor:
                rows = await cursor.fetchall()
            position += len(rows)
            # Acknowledge the batch: commit the cursor, as a queue table would.
            await self.db.execute(
                "INSERT OR REPLACE INTO cursor VALUES (?, ?)", (topic, position))


class RawSQLiteAcks(RawSQLite):
    name = "raw sqlite acks"

    async def consume(self, topic: str, count: int) -> None:
        assert self.db is not None
        done = 0
        while done < count:
            async with self.db.execute(
                "SELECT seq, body FROM log WHERE topic = ? ORDER BY seq LIMIT ?",
                (topic, BATCH)) as cursor:
                rows = await cursor.fetchall()
            acked = [(topic, seq) for seq, _ in rows]  # each message acknowledged on its own
            await self.db.execute("BEGIN IMMEDIATE")
            await self.db.executemany("DELETE FROM log WHERE topic = ? AND seq = ?", acked)
            await self.db.execute("COMMIT")
            done += len(rows)
