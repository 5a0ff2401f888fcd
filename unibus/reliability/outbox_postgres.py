"""Outbox table on PostgreSQL (asyncpg), written on the application's own connection.

    async with conn.transaction():                       # the application's connection
        await conn.execute("INSERT INTO orders ...")
        await PostgresOutbox.add(conn, "orders.placed", unibus.Message(body=..., key=customer))

    outbox = await PostgresOutbox.open(dsn)               # the relay's side
    await OutboxRelay(outbox, bus).run()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from unibus.errors import (
    BackendNotInstalledError,
    ClosedError,
    ConfigError,
    InvalidMessageError,
)
from unibus.message import Message
from unibus.reliability.outbox import OutboxRecord, decode_row, encode_message
from unibus.reliability.postgres_store import create_schema, postgres_errors, qualified

__all__ = ["PostgresOutbox"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, key TEXT,
    headers TEXT NOT NULL, body BYTEA NOT NULL)
"""

# High half of the advisory lock id ("unib"); the low half is the table's oid.
_LOCK_SPACE = 0x756E6962 << 32


def _text(value: str, what: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates."""
    if "\x00" in value:
        raise InvalidMessageError(f"the outbox cannot store a {what} containing NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessageError(f"the outbox cannot store a {what} that is not valid "
                                  f"Unicode text: {exc}") from None
    return value


class PostgresOutbox:
    """The relay's side of the outbox table; ``add`` joins the caller's own transaction.

    One relay at a time per table: the first ``pending`` takes a session advisory lock on the
    outbox's own connection and keeps it until :meth:`close`. Another relay's ``pending``
    returns nothing while that connection lives; when it goes away (the relay's process
    crashed, or it closed), the next relay takes over from the oldest record not deleted.
    """

    def __init__(self, dsn: str, schema: str | None, conn: Any) -> None:
        self._dsn = dsn
        self.schema = schema
        self._table = qualified(schema, "unibus_outbox")
        self._conn = conn
        self._lock_id: int | None = None
        self._locked = False
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, *, schema: str | None = None) -> PostgresOutbox:
        """Connect, and create the table (and ``schema``) if missing."""
        try:
            import asyncpg
        except ImportError as exc:
            raise BackendNotInstalledError("postgres", "asyncpg") from exc
        table = qualified(schema, "unibus_outbox")
        if not isinstance(dsn, str):
            raise ConfigError(f"dsn must be a str, got {type(dsn).__name__}")
        with postgres_errors("outbox"):
            conn = await asyncpg.connect(dsn, timeout=10, command_timeout=30)
            try:
                await create_schema(conn, schema, SCHEMA.format(table=table))
            except BaseException:
                await conn.close()
                raise
        return cls(dsn, schema, conn)

    @staticmethod
    async def create_table(conn: Any, *, schema: str | None = None) -> None:
        """Create the outbox table on the application's connection (``open`` does it too)."""
        with postgres_errors("outbox"):
            await create_schema(conn, schema, SCHEMA.format(table=qualified(schema,
                                                                            "unibus_outbox")))

    @staticmethod
    async def add(conn: Any, topic: str, message: Message, *,
                  schema: str | None = None) -> None:
        """Stage ``message`` in the caller's current transaction on ``conn`` (asyncpg): it is
        published if and only if that transaction commits."""
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty str, got {topic!r}")
        if not isinstance(message, Message):
            raise InvalidMessageError(f"expected a unibus.Message, got {type(message).__name__}")
        key, headers, body = encode_message(message)
        _text(topic, "topic")
        if key is not None:
            _text(key, "message key")
        with postgres_errors("outbox add"):
            await conn.execute(
                f"INSERT INTO {qualified(schema, 'unibus_outbox')}(topic, key, headers, body) "
                "VALUES ($1, $2, $3, $4)", topic, key, headers, body)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise ClosedError("the PostgreSQL outbox is closed")
        with postgres_errors(f"outbox {what}"):
            yield

    async def _connection(self) -> Any:
        """The outbox's connection, reconnected after a loss (the lock went with it)."""
        if self._conn.is_closed():
            import asyncpg

            self._locked = False
            self._conn = await asyncpg.connect(self._dsn, timeout=10, command_timeout=30)
        return self._conn

    async def pending(self, limit: int) -> list[OutboxRecord]:
        """The oldest records in insertion order; none while another relay holds the table."""
        with self._errors("pending"):
            conn = await self._connection()
            if not self._locked:
                if self._lock_id is None:
                    oid = await conn.fetchval("SELECT to_regclass($1)::oid", self._table)
                    self._lock_id = _LOCK_SPACE | int(oid)
                self._locked = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)",
                                                        self._lock_id))
                if not self._locked:
                    return []
            rows = await conn.fetch(
                f"SELECT seq, topic, key, headers, body FROM {self._table} "
                "ORDER BY seq LIMIT $1", limit)
        return [decode_row(r["seq"], r["topic"], r["key"], r["headers"], r["body"])
                for r in rows]

    async def delete(self, sequences: Sequence[int]) -> None:
        with self._errors("delete"):
            conn = await self._connection()
            await conn.execute(f"DELETE FROM {self._table} WHERE seq = ANY($1::bigint[])",
                               list(sequences))

    async def close(self) -> None:
        """Close the connection, which releases the relay lock."""
        if not self._closed:
            self._closed = True
            await self._conn.close()
