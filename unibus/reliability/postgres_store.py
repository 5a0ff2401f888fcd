"""Idempotency store on PostgreSQL (``pip install 'unibus[postgres]'``, asyncpg).

Times come from the server's clock, so workers on several machines agree on when a claim or a
completed id expires. Keys are stored as bytes (UTF-8, lone surrogates kept), so any message id
works, including ones PostgreSQL's ``text`` cannot hold (NUL).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import time
from collections.abc import Iterator
from typing import Any

from unibus.errors import (
    BackendNotInstalledError,
    ClosedError,
    ConfigError,
    ConnectionFailedError,
    InvalidMessageError,
    OperationTimeoutError,
    UnibusError,
    map_exceptions,
)
from unibus.reliability.idempotency import ClaimResult, FailureRecord

__all__ = ["PostgresStore"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_NOW = "extract(epoch FROM clock_timestamp())"
_LONGEST_KEY = 512  # bytes; longer keys are stored as their SHA-256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {processed} (
    key BYTEA PRIMARY KEY, state TEXT NOT NULL, until DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS unibus_processed_until ON {processed} (until);
CREATE TABLE IF NOT EXISTS {failures} (
    key BYTEA PRIMARY KEY, count INTEGER NOT NULL,
    first DOUBLE PRECISION NOT NULL, last DOUBLE PRECISION NOT NULL);
"""

# One statement: take a new or expired claim, or report the live one. An empty answer means a
# concurrent claim committed after this statement's snapshot: it is live, so "busy".
_CLAIM = """
WITH now AS (SELECT {now} AS t),
claimed AS (
    INSERT INTO {processed} AS p (key, state, until) SELECT $1, 'busy', t + $2 FROM now
    ON CONFLICT (key) DO UPDATE SET state = 'busy', until = EXCLUDED.until
        WHERE p.until <= (SELECT t FROM now)
    RETURNING 'new'::text AS result)
SELECT result FROM claimed
UNION ALL
SELECT state FROM {processed} WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM claimed)
"""

_DONE = """
INSERT INTO {processed} (key, state, until) VALUES ($1, 'done', {now} + $2)
ON CONFLICT (key) DO UPDATE SET state = 'done', until = EXCLUDED.until
"""

# A failure older than the retention window starts a new count, as Redis's key expiry does.
_FAILURE = """
INSERT INTO {failures} AS f (key, count, first, last) VALUES ($1, 1, {now}, {now})
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN f.last <= EXCLUDED.last - $2 THEN 1 ELSE f.count + 1 END,
    first = CASE WHEN f.last <= EXCLUDED.last - $2 THEN EXCLUDED.first ELSE f.first END,
    last = EXCLUDED.last
RETURNING count, first, last
"""


def postgres_errors(context: str) -> contextlib.AbstractContextManager[None]:
    """Translate asyncpg's and the socket's exceptions into unibus errors."""
    import asyncpg

    return map_exceptions({
        TimeoutError: OperationTimeoutError,  # before OSError, its base
        OSError: ConnectionFailedError,
        asyncpg.PostgresConnectionError: ConnectionFailedError,
        asyncpg.exceptions.OperatorInterventionError: ConnectionFailedError,  # shutting down
        asyncpg.exceptions.InvalidAuthorizationSpecificationError: ConnectionFailedError,
        asyncpg.exceptions.InvalidCatalogNameError: ConnectionFailedError,  # no such database
        asyncpg.exceptions.UndefinedTableError: ConfigError,
        asyncpg.exceptions.InvalidSchemaNameError: ConfigError,
        asyncpg.ClientConfigurationError: ConfigError,
        asyncpg.InterfaceError: ConnectionFailedError,  # e.g. the connection was closed
        asyncpg.PostgresError: UnibusError,
        ValueError: ConfigError,  # an unparseable DSN
    }, context=context)


def qualified(schema: str | None, table: str) -> str:
    """``table`` in ``schema`` (quoted), or unqualified (found through search_path)."""
    if schema is None:
        return table
    if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
        raise ConfigError(f"schema must be a plain SQL identifier (letters, digits, _; at most "
                          f"63 characters, not starting with a digit), got {schema!r}")
    return f'"{schema}".{table}'


async def create_schema(conn: Any, schema: str | None, ddl: str) -> None:
    """Run ``ddl`` (CREATE ... IF NOT EXISTS) serialised with every other unibus process:
    concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogs."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('unibus:ddl'))")
        if schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(ddl)


def _key(key: str) -> bytes:
    if not isinstance(key, str):
        raise InvalidMessageError(f"an idempotency key must be a str, got {type(key).__name__}")
    encoded = key.encode("utf-8", "surrogatepass")
    if len(encoded) > _LONGEST_KEY:
        # A btree entry holds at most ~2.7 kB; 0xFF never starts UTF-8, so a digest cannot
        # collide with a short key.
        return b"\xff" + hashlib.sha256(encoded).digest()
    return encoded


def _seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class PostgresStore:
    """Open with ``await PostgresStore.open("postgresql://user@127.0.0.1/db")``.

    ``schema`` puts the tables in that schema (created if missing) instead of the first one on
    the search_path. Safe for concurrent use by many workers and processes.
    """

    def __init__(self, pool: Any, retention: float, schema: str | None) -> None:
        self._pool = pool
        self.retention = retention
        self.schema = schema
        self._sql = {name: sql.format(now=_NOW, processed=qualified(schema, "unibus_processed"),
                                      failures=qualified(schema, "unibus_failures"))
                     for name, sql in (("claim", _CLAIM), ("done", _DONE),
                                       ("failure", _FAILURE))}
        self._processed = qualified(schema, "unibus_processed")
        self._failures = qualified(schema, "unibus_failures")
        self._closed = False
        self._last_prune = time.monotonic()

    @classmethod
    async def open(cls, dsn: str, retention: float = 86400.0, *,
                   schema: str | None = None) -> PostgresStore:
        try:
            import asyncpg
        except ImportError as exc:
            raise BackendNotInstalledError("postgres", "asyncpg") from exc
        retention = _seconds(retention, "retention")
        ddl = _SCHEMA.format(processed=qualified(schema, "unibus_processed"),
                             failures=qualified(schema, "unibus_failures"))
        if not isinstance(dsn, str):
            raise ConfigError(f"dsn must be a str, got {type(dsn).__name__}")
        with postgres_errors(f"PostgreSQL at {_redacted(dsn)}"):
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=10,
                                             command_timeout=30)
            try:
                async with pool.acquire() as conn:
                    await create_schema(conn, schema, ddl)
            except BaseException:
                await pool.close()
                raise
        return cls(pool, retention, schema)

    @staticmethod
    def key(group: str | None, message_id: str) -> str:
        """The key the handler runner claims for a message of ``group``."""
        return f"{group or ''}:{message_id}"

    @staticmethod
    async def mark_done(conn: Any, key: str, retention: float = 86400.0, *,
                        schema: str | None = None) -> None:
        """Record ``key`` as processed on the application's own asyncpg connection, inside the
        transaction that makes the handler's change: both commit or neither does, so a
        redelivery after a crash is recognised as done (effectively-once processing). The
        store must have been opened once (it creates the tables)."""
        sql = _DONE.format(now=_NOW, processed=qualified(schema, "unibus_processed"))
        with postgres_errors("marking a message done"):
            await conn.execute(sql, _key(key), _seconds(retention, "retention"))

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise ClosedError("the PostgreSQL idempotency store is closed")
        with postgres_errors(f"idempotency store {what}"):
            yield

    async def claim(self, key: str, lease: float) -> ClaimResult:
        name, lease = _key(key), _seconds(lease, "lease")
        with self._errors("claim"):
            await self._prune()
            async with self._pool.acquire() as conn:
                state = await conn.fetchval(self._sql["claim"], name, lease)
        return "new" if state == "new" else "done" if state == "done" else "busy"

    async def complete(self, key: str) -> None:
        name = _key(key)
        with self._errors("complete"):
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(self._sql["done"], name, self.retention)
                await conn.execute(f"DELETE FROM {self._failures} WHERE key = $1", name)

    async def release(self, key: str) -> None:
        name = _key(key)
        with self._errors("release"):
            async with self._pool.acquire() as conn:
                await conn.execute(
                    f"DELETE FROM {self._processed} WHERE key = $1 AND state = 'busy'", name)

    async def record_failure(self, key: str) -> FailureRecord:
        name = _key(key)
        with self._errors("record_failure"):
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(self._sql["failure"], name, self.retention)
        return FailureRecord(int(row["count"]), float(row["first"]), float(row["last"]))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    async def _prune(self) -> None:
        """Forget expired ids and old failure counts, at most once a minute per store."""
        if time.monotonic() - self._last_prune < 60:
            return
        self._last_prune = time.monotonic()
        async with self._pool.acquire() as conn:
            await conn.execute(f"DELETE FROM {self._processed} WHERE until <= {_NOW}")
            await conn.execute(f"DELETE FROM {self._failures} WHERE last <= {_NOW} - $1",
                               self.retention)


def _redacted(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", dsn)
