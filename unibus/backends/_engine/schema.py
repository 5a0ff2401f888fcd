"""Tables of the embedded engine, and how a connection is prepared."""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "prepare", "transaction"]

SCHEMA_VERSION = 2

# seq: a message's offset in its topic's log, from 0. A lease is a message a group has taken
# from its log but not settled: waiting (owner NULL, visible from visible_at) or in flight
# (owner set, until lease_until). attempt counts the deliveries so far. only_grp marks a
# dead letter replayed to the one group that dead-lettered it. A run is many leases in one
# row: the offsets lo..hi, each of them keyless, first delivered, and in flight at one owner
# under one token (schema 2; see queue.py).
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY, value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL DEFAULT 0,
    retention REAL,
    max_attempts INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT,
    id TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    published_at REAL NOT NULL,
    deliver_at REAL,
    only_grp TEXT,
    PRIMARY KEY (topic, seq)
);
CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    ephemeral INTEGER NOT NULL DEFAULT 0,
    seen_at REAL NOT NULL,
    PRIMARY KEY (topic, grp)
);
CREATE TABLE IF NOT EXISTS leases (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT,
    attempt INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    owner TEXT,
    lease_until REAL,
    token INTEGER,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leases_keyed ON leases (topic, grp, key, seq)
    WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS leases_waiting ON leases (topic, grp, visible_at)
    WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS leases_leased ON leases (topic, grp, lease_until)
    WHERE lease_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS lease_runs (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (topic, grp, lo)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    grp TEXT,
    id TEXT NOT NULL,
    key TEXT,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    dead_lettered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_topic ON dead_letters (topic, grp, n);
CREATE INDEX IF NOT EXISTS dead_letters_by_id ON dead_letters (topic, id);
CREATE TABLE IF NOT EXISTS dedup (
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    published_at REAL NOT NULL,
    PRIMARY KEY (topic, id)
) WITHOUT ROWID;
"""


# Leases are written and deleted once per message: WITHOUT ROWID, the table is its primary
# key's B-tree, one B-tree write less per lease than a rowid table and its key index (about
# a third of the thread's time per consumed message). The first schema 1 databases have the
# rowid table; prepare() rebuilds it (a few thousand rows at most, in the same transaction).
_LEASE_COLUMNS = "topic, grp, seq, key, attempt, visible_at, owner, lease_until, token"

# Indexes of the first schema 1 databases, replaced by the partial ones in _TABLES: a lease is
# written to the indexes that can find it, so a keyless lease in flight costs two B-tree
# writes (the table, leases_leased) rather than six. leases_owned went last: heartbeats and
# close find a consumer's leases among its group's in flight. (A process of an older unibus
# on the same file creates them again; both sets then work, the newer process drops them at
# its next start.)
_OLD_INDEXES = ("leases_by_key", "leases_by_owner", "leases_free", "leases_expiring",
                "leases_owned")


def prepare(conn: sqlite3.Connection, *, durable: bool, busy_timeout: float,
            synchronous: str) -> None:
    """Pragmas, then the tables (idempotent; safe when several processes race)."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if durable:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch the database to WAL mode ({mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    else:
        conn.execute("PRAGMA journal_mode = MEMORY")
        conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -32768")  # 32 MiB: dedup ids and leases stay cached
    with transaction(conn):
        _create(conn, _TABLES)
        _rebuild_rowid_leases(conn)
        for index in _OLD_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the database was written by a newer unibus (schema {row[0]}); upgrade unibus"
            )
        elif int(row[0]) < SCHEMA_VERSION:
            # Schema 1 files gain the lease_runs table above. From now on an older unibus
            # refuses the file: it would not see the messages in flight in runs, and a
            # consumer of it would never deliver them again if this process died holding them.
            conn.execute("UPDATE meta SET value = ? WHERE name = 'schema'",
                         (str(SCHEMA_VERSION),))


def _create(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _rebuild_rowid_leases(conn: sqlite3.Connection) -> None:
    """Turn a first-schema ``leases`` rowid table into the WITHOUT ROWID one, rows kept.
    (Another process's older unibus keeps working: the columns and queries are the same.)"""
    sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'leases'"
    ).fetchone()[0]
    if "WITHOUT ROWID" in sql.upper():
        return
    rows = conn.execute(f"SELECT {_LEASE_COLUMNS} FROM leases").fetchall()
    conn.execute("DROP TABLE leases")  # and its indexes
    _create(conn, _TABLES)
    conn.executemany(f"INSERT INTO leases ({_LEASE_COLUMNS}) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


class transaction:  # a context manager named like the statement it wraps
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one writer at a time, and
    other processes wait up to ``busy_timeout`` for the lock instead of failing."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
