"""The append-only log: topics, appending with deduplication, retention, deletion.

Plain functions of a connection, run on the store's worker thread.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain

from unibus.backends._engine.schema import transaction
from unibus.errors import TopicNotFoundError

__all__ = ["Batch", "Row", "append", "append_batches", "append_in", "delete_topic",
           "ensure_topic", "prune", "topic_max_attempts", "upsert_topic"]

#: A message to append: key, id, wire headers (JSON), body.
Row = tuple[str | None, str, str, bytes]


def ensure_topic(conn: sqlite3.Connection, topic: str, auto_create: bool, now: float) -> int:
    """The topic's next offset; creates the topic or raises TopicNotFoundError."""
    row = conn.execute("SELECT next_seq FROM topics WHERE topic = ?", (topic,)).fetchone()
    if row is not None:
        return int(row[0])
    if not auto_create:
        raise TopicNotFoundError(
            f"topic {topic!r} does not exist and auto_create is off; provision it first "
            "(bus.provision(...) or `unibus` tooling)"
        )
    conn.execute("INSERT INTO topics (topic, next_seq, created_at) VALUES (?, 0, ?)",
                 (topic, now))
    return 0


def append(
    conn: sqlite3.Connection, topic: str, rows: Sequence[Row], *, now: float,
    deliver_at: float | None, auto_create: bool, dedup_window: float,
) -> list[tuple[int, bool]]:
    """Append ``rows`` in one transaction; (offset, duplicate) for each, in order.

    A message id already appended within ``dedup_window`` seconds (0: no deduplication) is
    not stored again: its original offset is returned with ``duplicate=True``.
    """
    with transaction(conn):
        return append_in(conn, topic, rows, now=now, deliver_at=deliver_at,
                         auto_create=auto_create, dedup_window=dedup_window)


#: One publish call waiting for a group commit: topic, rows, deliver-after time.
Batch = tuple[str, Sequence[Row], float | None]


def append_batches(
    conn: sqlite3.Connection, batches: Sequence[Batch], *, now: float, auto_create: bool,
    dedup_window: float,
) -> list[list[tuple[int, bool]] | TopicNotFoundError]:
    """Several publish calls in one transaction (a group commit); a call refused for an
    unknown topic is rolled back alone and gets its error in place of its receipts."""
    out: list[list[tuple[int, bool]] | TopicNotFoundError] = []
    with transaction(conn):
        for topic, rows, deliver_at in batches:
            conn.execute("SAVEPOINT publish")
            try:
                out.append(append_in(conn, topic, rows, now=now, deliver_at=deliver_at,
                                     auto_create=auto_create, dedup_window=dedup_window))
            except TopicNotFoundError as exc:
                conn.execute("ROLLBACK TO publish")
                out.append(exc)
            conn.execute("RELEASE publish")
    return out


def append_in(
    conn: sqlite3.Connection, topic: str, rows: Sequence[Row], *, now: float,
    deliver_at: float | None, auto_create: bool, dedup_window: float,
    only_grp: str | None = None,
) -> list[tuple[int, bool]]:
    """:func:`append` inside the caller's transaction; ``only_grp`` limits delivery to one
    group (a replayed dead letter)."""
    seq = ensure_topic(conn, topic, auto_create, now)
    if dedup_window <= 0:
        _insert_messages(conn, topic, rows, seq, now, deliver_at, only_grp)
        conn.execute("UPDATE topics SET next_seq = ? WHERE topic = ?", (seq + len(rows), topic))
        return [(seq + i, False) for i in range(len(rows))]
    if _append_fresh(conn, topic, rows, seq, now, deliver_at, only_grp):
        return [(seq + i, False) for i in range(len(rows))]
    # Some id was seen before: look them up, store the new ones only.
    seen: dict[str, int] = {}
    ids = list({row[1] for row in rows})
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for msg_id, old in conn.execute(
            f"SELECT id, seq FROM dedup WHERE topic = ? AND published_at >= ? "
            f"AND id IN ({marks})", (topic, now - dedup_window, *chunk),
        ):
            seen[msg_id] = int(old)
    out: list[tuple[int, bool]] = []
    fresh: list[tuple[object, ...]] = []
    for key, msg_id, headers, body in rows:
        if msg_id in seen:
            out.append((seen[msg_id], True))
            continue
        out.append((seq, False))
        fresh.append((topic, seq, key, msg_id, headers, body, now, deliver_at, only_grp))
        seen[msg_id] = seq
        seq += 1
    if fresh:
        conn.executemany(
            "INSERT INTO messages (topic, seq, key, id, headers, body, published_at, "
            "deliver_at, only_grp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", fresh,
        )
        conn.execute("UPDATE topics SET next_seq = ? WHERE topic = ?", (seq, topic))
        conn.executemany(
            "INSERT OR REPLACE INTO dedup (topic, id, seq, published_at) "
            "VALUES (?, ?, ?, ?)", [(topic, r[3], r[1], now) for r in fresh],
        )
    return out


def _append_fresh(conn: sqlite3.Connection, topic: str, rows: Sequence[Row], seq: int,
                  now: float, deliver_at: float | None, only_grp: str | None) -> bool:
    """The common case of :func:`append_in`, every id new: the dedup insert is the lookup.
    Returns False, having changed nothing, when some id was already known (or repeated)."""
    conn.execute("SAVEPOINT fresh")
    try:
        _insert_messages(conn, topic, rows, seq, now, deliver_at, only_grp)
        # Copied by SQLite from the rows just written: no parameters to bind per message.
        cursor = conn.execute(
            "INSERT OR IGNORE INTO dedup (topic, id, seq, published_at) "
            "SELECT topic, id, seq, published_at FROM messages "
            "WHERE topic = ? AND seq BETWEEN ? AND ?", (topic, seq, seq + len(rows) - 1),
        )
        if cursor.rowcount != len(rows):
            conn.execute("ROLLBACK TO fresh")
            return False
        conn.execute("UPDATE topics SET next_seq = ? WHERE topic = ?", (seq + len(rows), topic))
    except BaseException:
        conn.execute("ROLLBACK TO fresh")
        raise
    finally:
        conn.execute("RELEASE fresh")
    return True


# Rows per INSERT statement: (key, id, headers, body) bound per row, the rest once, within
# the 999 parameters older SQLite builds allow.
_CHUNK = 128


def _insert_messages(conn: sqlite3.Connection, topic: str, rows: Sequence[Row], seq: int,
                     now: float, deliver_at: float | None, only_grp: str | None) -> None:
    """Append ``rows`` at offsets ``seq``, ``seq + 1``, ...: one multi-row INSERT per
    :data:`_CHUNK` rows (and per power of two of the rest, so few statements are ever
    prepared), which costs SQLite a fraction of an ``executemany`` step per row."""
    start, total = 0, len(rows)
    while start < total:
        size = min(_CHUNK, 1 << ((total - start).bit_length() - 1))
        conn.execute(_insert_sql(size), (topic, now, deliver_at, only_grp, seq + start,
                                         *chain.from_iterable(rows[start:start + size])))
        start += size


@functools.cache
def _insert_sql(size: int) -> str:
    # ?1 topic, ?2 published_at, ?3 deliver_at, ?4 only_grp, ?5 the first offset, then
    # key, id, headers and body of each row.
    values = ",".join(
        f"(?1,?5+{i},?{6 + 4 * i},?{7 + 4 * i},?{8 + 4 * i},?{9 + 4 * i},?2,?3,?4)"
        for i in range(size)
    )
    return ("INSERT INTO messages (topic, seq, key, id, headers, body, published_at, "
            f"deliver_at, only_grp) VALUES {values}")


def upsert_topic(
    conn: sqlite3.Connection, topic: str, retention: float | None, max_attempts: int | None,
    groups: Sequence[str], now: float,
) -> None:
    """Create or update a topic and create ``groups`` (from the start of the log)."""
    with transaction(conn):
        ensure_topic(conn, topic, True, now)
        conn.execute("UPDATE topics SET retention = ?, max_attempts = ? WHERE topic = ?",
                     (retention, max_attempts, topic))
        conn.executemany(
            "INSERT OR IGNORE INTO groups (topic, grp, next_seq, ephemeral, seen_at) "
            "VALUES (?, ?, 0, 0, ?)", [(topic, g, now) for g in groups],
        )


def topic_max_attempts(conn: sqlite3.Connection, topic: str) -> int | None:
    row = conn.execute("SELECT max_attempts FROM topics WHERE topic = ?", (topic,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def delete_topic(conn: sqlite3.Connection, topic: str) -> None:
    with transaction(conn):
        for table in ("messages", "groups", "leases", "lease_runs", "dead_letters", "dedup",
                      "topics"):
            conn.execute(f"DELETE FROM {table} WHERE topic = ?", (topic,))


def prune(conn: sqlite3.Connection, now: float, dedup_window: float,
          stale_after: float) -> int:
    """Retention: delete messages older than their topic's retention that every group has
    passed; forget expired dedup ids; drop private groups of consumers that died.
    Returns how many messages were deleted."""
    deleted = 0
    with transaction(conn):
        stale = conn.execute(
            "SELECT topic, grp FROM groups WHERE ephemeral = 1 AND seen_at < ?",
            (now - stale_after,),
        ).fetchall()
        for topic, grp in stale:
            conn.execute("DELETE FROM leases WHERE topic = ? AND grp = ?", (topic, grp))
            conn.execute("DELETE FROM lease_runs WHERE topic = ? AND grp = ?", (topic, grp))
            conn.execute("DELETE FROM groups WHERE topic = ? AND grp = ?", (topic, grp))
        for topic, retention in conn.execute(
            "SELECT topic, retention FROM topics WHERE retention IS NOT NULL"
        ).fetchall():
            floor = conn.execute(
                "SELECT min(s) FROM (SELECT min(next_seq) AS s FROM groups WHERE topic = ?1 "
                "UNION ALL SELECT min(seq) FROM leases WHERE topic = ?1 "
                "UNION ALL SELECT min(lo) FROM lease_runs WHERE topic = ?1)", (topic,),
            ).fetchone()[0]
            cursor = conn.execute(
                "DELETE FROM messages WHERE topic = ? AND published_at < ? AND seq < ?",
                (topic, now - retention, floor if floor is not None else 1 << 62),
            )
            deleted += cursor.rowcount
        conn.execute("DELETE FROM dedup WHERE published_at < ?", (now - dedup_window,))
    return deleted
