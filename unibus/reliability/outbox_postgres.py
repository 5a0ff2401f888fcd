"""Outbox table on PostgreSQL (asyncpg), written on the application's own connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unibus.errors import BackendNotInstalledError
from unibus.message import Message
from unibus.reliability.outbox import OutboxRecord, decode_row, encode_message

__all__ = ["PostgresOutbox"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS unibus_outbox (
    seq BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, key TEXT,
    headers TEXT NOT NULL, body BYTEA NOT NULL)
"""


class PostgresOutbox:
    """One relay at a time per table: ``pending`` holds an advisory lock while it reads."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str) -> PostgresOutbox:
        try:
            import asyncpg
        except ImportError as exc:
            raise BackendNotInstalledError("postgres", "asyncpg") from exc
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA)
        return cls(pool)

    @staticmethod
    async def add(conn: Any, topic: str, message: Message) -> None:
        """Stage ``message`` in the caller's current transaction on ``conn``."""
        key, headers, body = encode_message(message)
        await conn.execute(
            "INSERT INTO unibus_outbox(topic, key, headers, body) VALUES ($1, $2, $3, $4)",
            topic, key, headers, body)

    async def pending(self, limit: int) -> list[OutboxRecord]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, topic, key, headers, body FROM unibus_outbox ORDER BY seq LIMIT $1",
                limit)
        return [decode_row(r["seq"], r["topic"], r["key"], r["headers"], r["body"])
                for r in rows]

    async def delete(self, sequences: Sequence[int]) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM unibus_outbox WHERE seq = ANY($1::bigint[])",
                               list(sequences))

    async def close(self) -> None:
        await self._pool.close()
