"""Outbox table on SQLite, written through the application's own aiosqlite connection."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from unibus.message import Message
from unibus.reliability.outbox import OutboxRecord, decode_row, encode_message

__all__ = ["SQLiteOutbox"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS unibus_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT,
    headers TEXT NOT NULL, body BLOB NOT NULL)
"""


class SQLiteOutbox:
    """``add`` joins the caller's transaction; the relay reads through its own connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str) -> SQLiteOutbox:
        db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(SCHEMA)
        return cls(db)

    @staticmethod
    async def create_table(conn: aiosqlite.Connection) -> None:
        await conn.execute(SCHEMA)

    @staticmethod
    async def add(conn: aiosqlite.Connection, topic: str, message: Message) -> None:
        """Stage ``message`` in the caller's current transaction on ``conn``."""
        key, headers, body = encode_message(message)
        await conn.execute(
            "INSERT INTO unibus_outbox(topic, key, headers, body) VALUES (?, ?, ?, ?)",
            (topic, key, headers, body),
        )

    async def pending(self, limit: int) -> list[OutboxRecord]:
        async with self._db.execute(
            "SELECT seq, topic, key, headers, body FROM unibus_outbox ORDER BY seq LIMIT ?",
            (limit,),
        ) as cursor:
            return [decode_row(*row) for row in await cursor.fetchall()]

    async def delete(self, sequences: Sequence[int]) -> None:
        await self._db.executemany(
            "DELETE FROM unibus_outbox WHERE seq = ?", [(s,) for s in sequences])

    async def close(self) -> None:
        await self._db.close()
