"""Consumer groups over the log: cursors, leases, settlement and seeking.

A group's cursor (``groups.next_seq``) marks what it has taken from the log. Taken but
unsettled messages are leases; a lease is handed to one member at a time, and a message
is handed out only when every earlier unsettled message with its key is in flight at the
same consumer, so keys stay in order and a delayed retry blocks only its own key. Plain
functions run on the store's thread.

Runs: the keyless messages a fetch takes straight from the log are usually consecutive
offsets, and each becomes a lease only to be deleted by its ack a moment later. They are
written as one row per stretch of consecutive offsets instead (``lease_runs``: lo..hi in
flight at one owner under one token, first delivery), which acks shrink from either end or
cut in two. Whatever needs one offset on its own (a nack, a dead letter, a release) cuts it
out of its run first; a run whose lease lapsed, or whose owner closed, is spilled into
ordinary leases.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from unibus.backends._engine.log import ensure_topic
from unibus.backends._engine.schema import transaction
from unibus.positions import Position

__all__ = ["Taken", "ack", "dead_letter", "fetch", "heartbeat", "join", "leave", "nack",
           "release", "seek"]

log = logging.getLogger("unibus.sqlite")

#: A delivery: topic, offset, attempt, lease token, key, headers (JSON), body.
Taken = tuple[str, int, int, int, str | None, str, bytes]

#: Start of a new group, or a seek target (a Position is resolved per topic).
Target = str | Position | datetime

# How many taken-but-unsettled messages a group may hold; bounds the leases table when a
# key is blocked by a slow or delayed message.
_BACKLOG = 2000

# Free leases (waiting, now visible) and expired ones, each through its own index.
_CANDIDATES = """
SELECT seq, attempt, key FROM (
    SELECT seq, attempt, key FROM leases
    WHERE topic = ?1 AND grp = ?2 AND owner IS NULL AND visible_at <= ?3
    UNION ALL
    SELECT seq, attempt, key FROM leases
    WHERE topic = ?1 AND grp = ?2 AND lease_until < ?3
) ORDER BY seq LIMIT ?4
"""

# An earlier unsettled message of the same key that is not in flight at this consumer.
_BLOCKER = """
SELECT 1 FROM leases
WHERE topic = ?1 AND grp = ?2 AND key = ?3 AND seq > ?4 AND seq < ?5
  AND NOT (owner IS NOT NULL AND owner = ?6 AND lease_until >= ?7)
LIMIT 1
"""

_WORK = """
SELECT EXISTS (SELECT 1 FROM groups AS g JOIN topics AS t ON t.topic = g.topic
               WHERE g.topic = ?1 AND g.grp = ?2 AND t.next_seq > g.next_seq)
    OR EXISTS (SELECT 1 FROM leases WHERE topic = ?1 AND grp = ?2 AND owner IS NULL
               AND visible_at <= ?3)
    OR EXISTS (SELECT 1 FROM leases WHERE topic = ?1 AND grp = ?2 AND lease_until < ?3)
    OR EXISTS (SELECT 1 FROM lease_runs WHERE topic = ?1 AND grp = ?2 AND lease_until < ?3)
"""


# The leases in flight at one consumer (?4) of a group (?2, ?3), found through the index of
# the group's leases in flight: no index by owner to write for every lease.
_OWNED = "topic = ?2 AND grp = ?3 AND lease_until IS NOT NULL AND owner = ?4"

# The runs of a group (?1, ?2) under token ?5 that hold offsets of ?3..?4. Runs do not
# overlap, so the only one starting below ?3 that can is the last such: the key range
# searched starts there, not at the group's first run.
_OVERLAPPING = """
SELECT lo, hi, owner, lease_until FROM lease_runs
WHERE topic = ?1 AND grp = ?2 AND token = ?5 AND hi >= ?3 AND lo <= ?4
  AND lo >= (SELECT coalesce(max(lo), ?3) FROM lease_runs
             WHERE topic = ?1 AND grp = ?2 AND lo <= ?3)
"""

_ADD_RUN = ("INSERT INTO lease_runs (topic, grp, lo, hi, owner, lease_until, token) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)")

# A run's offsets as leases, in flight as they were (owner NULL: waiting, visible at ?3).
# Every offset of a run is in the log: pruning stops below the lowest one.
_SPILL = """
INSERT OR IGNORE INTO leases (topic, grp, seq, key, attempt, visible_at, owner, lease_until,
                              token)
SELECT ?1, ?2, seq, NULL, 1, ?3, ?4, ?5, ?6 FROM messages
WHERE topic = ?1 AND seq BETWEEN ?7 AND ?8
"""


def _resolve(conn: sqlite3.Connection, topic: str, to: Target) -> int | None:
    """The offset ``to`` means in ``topic`` (None: a Position of another topic)."""
    row = conn.execute("SELECT next_seq FROM topics WHERE topic = ?", (topic,)).fetchone()
    if row is None:
        return None
    end = int(row[0])
    if isinstance(to, Position):
        return int(to.offset) if to.topic == topic else None
    if isinstance(to, datetime):
        row = conn.execute(
            "SELECT min(seq) FROM messages WHERE topic = ? AND published_at >= ?",
            (topic, to.timestamp()),
        ).fetchone()
        return end if row[0] is None else int(row[0])
    return end if to == "latest" else 0


def join(conn: sqlite3.Connection, topics: Sequence[str], grp: str, start: Target,
         ephemeral: bool, auto_create: bool, now: float) -> None:
    """Create the group on each topic at ``start`` (existing groups keep their cursor)."""
    with transaction(conn):
        for topic in topics:
            ensure_topic(conn, topic, auto_create, now)
            exists = conn.execute("SELECT 1 FROM groups WHERE topic = ? AND grp = ?",
                                  (topic, grp)).fetchone()
            if exists:
                conn.execute("UPDATE groups SET seen_at = ? WHERE topic = ? AND grp = ?",
                             (now, topic, grp))
                continue
            seq = _resolve(conn, topic, start)
            conn.execute(
                "INSERT INTO groups (topic, grp, next_seq, ephemeral, seen_at) "
                "VALUES (?, ?, ?, ?, ?)", (topic, grp, seq or 0, int(ephemeral), now),
            )


def leave(conn: sqlite3.Connection, topics: Sequence[str], grp: str) -> None:
    """Delete a private group and its leases."""
    with transaction(conn):
        for topic in topics:
            conn.execute("DELETE FROM leases WHERE topic = ? AND grp = ?", (topic, grp))
            conn.execute("DELETE FROM lease_runs WHERE topic = ? AND grp = ?", (topic, grp))
            conn.execute("DELETE FROM groups WHERE topic = ? AND grp = ?", (topic, grp))


def fetch(conn: sqlite3.Connection, topics: Sequence[str], grp: str, owner: str,
          limit: int, now: float, lease_until: float) -> list[Taken]:
    """Lease up to ``limit`` messages to ``owner``: due retries and expired leases first,
    then new messages from the cursor, never two unsettled messages of one key at once.

    The leases of one fetch share a token (a later fetch of the same message draws a new
    one, which is all a stale settlement needs to miss). New keyless messages that are due
    go from the log straight to an owned lease: one write each instead of a waiting lease
    updated a moment later."""
    busy = [t for t in topics if conn.execute(_WORK, (t, grp, now)).fetchone()[0]]
    if not busy:
        return []  # nothing to do: no write lock taken
    out: list[Taken] = []
    token = random.getrandbits(62)
    with transaction(conn):
        for topic in busy:
            if len(out) >= limit:
                break
            _expire_runs(conn, topic, grp, now)
            taken = _lease(conn, topic, grp, owner, lease_until, token,
                           _choose(conn, topic, grp, owner, limit - len(out), now))
            waiting = _take_from_log(conn, topic, grp, owner, lease_until, token, now,
                                     limit - len(out) - len(taken), taken)
            if waiting and len(out) + len(taken) < limit:
                taken += _lease(conn, topic, grp, owner, lease_until, token,
                                _choose(conn, topic, grp, owner, limit - len(out) - len(taken),
                                        now))
                taken.sort(key=_offset)
            out += taken
    return out


def _offset(taken: Taken) -> int:
    return taken[1]


def _expire_runs(conn: sqlite3.Connection, topic: str, grp: str, now: float) -> None:
    """Runs whose lease lapsed become expired leases, which :func:`_choose` hands out again
    (their token kept: the old owner may still settle them until someone else takes them)."""
    for lo, hi, owner, lease_until, token in conn.execute(
        "SELECT lo, hi, owner, lease_until, token FROM lease_runs "
        "WHERE topic = ? AND grp = ? AND lease_until < ?", (topic, grp, now),
    ).fetchall():
        _spill(conn, topic, grp, lo, hi, now, owner, lease_until, token)


def _spill(conn: sqlite3.Connection, topic: str, grp: str, lo: int, hi: int, now: float,
           owner: str | None, lease_until: float | None, token: int | None) -> None:
    conn.execute("DELETE FROM lease_runs WHERE topic = ? AND grp = ? AND lo = ?",
                 (topic, grp, lo))
    _spill_range(conn, topic, grp, lo, hi, now, owner, lease_until, token)


def _spill_range(conn: sqlite3.Connection, topic: str, grp: str, lo: int, hi: int,
                 now: float, owner: str | None, lease_until: float | None,
                 token: int | None) -> None:
    written = conn.execute(_SPILL, (topic, grp, now, owner, lease_until, token, lo, hi))
    if written.rowcount != hi - lo + 1:  # messages of a run gone: never by this unibus
        log.error("topic %s group %s: %d of the messages at offsets %d-%d in flight are no "
                  "longer in the log (deleted by another program or an older unibus)",
                  topic, grp, hi - lo + 1 - written.rowcount, lo, hi)


def _add_runs(conn: sqlite3.Connection, topic: str, grp: str, owner: str,
              lease_until: float, token: int, seqs: list[int]) -> None:
    """Lease ``seqs`` (ascending) to ``owner``: one run per stretch of consecutive offsets.

    Runs at or past the first of them are dropped, as a seek drops them: only an older
    unibus moving the cursor back (it knows no runs) leaves any there."""
    _drop_runs_from(conn, topic, grp, seqs[0])
    rows: list[tuple[object, ...]] = []
    lo = hi = seqs[0]
    for seq in seqs[1:]:
        if seq != hi + 1:
            rows.append((topic, grp, lo, hi, owner, lease_until, token))
            lo = seq
        hi = seq
    rows.append((topic, grp, lo, hi, owner, lease_until, token))
    conn.executemany(_ADD_RUN, rows)


def _drop_runs_from(conn: sqlite3.Connection, topic: str, grp: str, seq: int) -> None:
    """Forget the group's runs at and after offset ``seq`` (a run across it keeps its start)."""
    conn.execute("DELETE FROM lease_runs WHERE topic = ? AND grp = ? AND lo >= ?",
                 (topic, grp, seq))
    conn.execute("UPDATE lease_runs SET hi = ? WHERE topic = ? AND grp = ? AND hi >= ?",
                 (seq - 1, topic, grp, seq))


def _cut(conn: sqlite3.Connection, topic: str, grp: str, token: int, lo: int,
         hi: int) -> list[tuple[int, int]]:
    """Take the offsets lo..hi out of the runs that hold them under ``token``; returns the
    stretches taken (what the runs held of lo..hi)."""
    taken: list[tuple[int, int]] = []
    overlapping = conn.execute(_OVERLAPPING, (topic, grp, lo, hi, token)).fetchall()
    for run_lo, run_hi, owner, lease_until in overlapping:
        conn.execute("DELETE FROM lease_runs WHERE topic = ? AND grp = ? AND lo = ?",
                     (topic, grp, run_lo))
        if run_lo < lo:
            conn.execute(_ADD_RUN, (topic, grp, run_lo, lo - 1, owner, lease_until, token))
        if run_hi > hi:
            conn.execute(_ADD_RUN, (topic, grp, hi + 1, run_hi, owner, lease_until, token))
        taken.append((max(run_lo, lo), min(run_hi, hi)))
    return taken


def _stretches(leases: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int, int]]:
    """``leases`` (topic, offset, token) as (topic, token, first, last) stretches of
    consecutive offsets."""
    runs: list[tuple[str, int, int, int]] = []
    for topic, seq, token in sorted(leases):
        if runs:
            t, k, first, last = runs[-1]
            if seq == last + 1 and token == k and topic == t:
                runs[-1] = (t, k, first, seq)
                continue
        runs.append((topic, token, seq, seq))
    return runs


def _lease(conn: sqlite3.Connection, topic: str, grp: str, owner: str, lease_until: float,
           token: int, chosen: list[tuple[int, int]]) -> list[Taken]:
    """Hand the chosen waiting or expired leases to ``owner``; their messages, by offset."""
    out: list[Taken] = []
    for start in range(0, len(chosen), 500):
        chunk = chosen[start:start + 500]
        seqs = [seq for seq, _ in chunk]
        marks = ",".join("?" * len(seqs))
        conn.execute(
            "UPDATE leases SET attempt = attempt + 1, owner = ?, lease_until = ?, token = ? "
            f"WHERE topic = ? AND grp = ? AND seq IN ({marks})",
            (owner, lease_until, token, topic, grp, *seqs),
        )
        attempts = dict(chunk)
        for seq, key, headers, body in conn.execute(
            "SELECT seq, key, headers, body FROM messages "
            f"WHERE topic = ? AND seq IN ({marks}) ORDER BY seq", (topic, *seqs),
        ):
            out.append((topic, seq, attempts[seq] + 1, token, key, headers, body))
    return out


def _choose(conn: sqlite3.Connection, topic: str, grp: str, owner: str, limit: int,
            now: float) -> list[tuple[int, int]]:
    """(offset, attempt) of up to ``limit`` free leases, oldest first, skipping any whose
    key has an earlier unsettled message that is not in flight at this same consumer."""
    chosen: list[tuple[int, int]] = []
    last_of_key: dict[str, int] = {}
    blocked: set[str] = set()
    for seq, attempt, key in conn.execute(_CANDIDATES, (topic, grp, now, _BACKLOG + 500))\
            .fetchall():
        if key is not None:
            if key in blocked:
                continue
            since = last_of_key.get(key, -1)
            if conn.execute(_BLOCKER, (topic, grp, key, since, seq, owner, now)).fetchone():
                blocked.add(key)
                continue
            last_of_key[key] = seq
        chosen.append((seq, attempt))
        if len(chosen) >= limit:
            break
    return chosen


def _take_from_log(conn: sqlite3.Connection, topic: str, grp: str, owner: str,
                   lease_until: float, token: int, now: float, room: int,
                   out: list[Taken]) -> int:
    """Move new messages from the log into the group's leases and advance its cursor: up to
    ``room`` due keyless ones leased to ``owner`` at once (appended to ``out``), the others
    waiting for :func:`_choose`. Returns how many went to waiting leases."""
    row = conn.execute("SELECT next_seq FROM groups WHERE topic = ? AND grp = ?",
                       (topic, grp)).fetchone()
    if row is None or room <= 0:
        return 0
    held = conn.execute(
        "SELECT (SELECT count(*) FROM leases WHERE topic = ?1 AND grp = ?2) + "
        "(SELECT coalesce(sum(hi - lo + 1), 0) FROM lease_runs WHERE topic = ?1 AND grp = ?2)",
        (topic, grp)).fetchone()[0]
    take = min(_BACKLOG - held, max(room, 100))
    if take <= 0:
        return 0
    new = conn.execute(
        "SELECT seq, key, deliver_at, only_grp, headers, body FROM messages "
        "WHERE topic = ? AND seq >= ? ORDER BY seq LIMIT ?", (topic, row[0], take),
    ).fetchall()
    if not new:
        return 0
    leased = 0
    waiting: list[tuple[object, ...]] = []
    for seq, key, deliver_at, only, headers, body in new:
        if only is not None and only != grp:
            continue  # a dead letter replayed to another group
        if key is None and leased < room and (deliver_at is None or deliver_at <= now):
            leased += 1
            out.append((topic, seq, 1, token, None, headers, body))
        else:
            waiting.append((topic, grp, seq, key, deliver_at or 0))
    if leased:
        _add_runs(conn, topic, grp, owner, lease_until, token,
                  [taken[1] for taken in out[-leased:]])
    if waiting:
        conn.executemany(
            "INSERT OR IGNORE INTO leases (topic, grp, seq, key, attempt, visible_at) "
            "VALUES (?, ?, ?, ?, 0, ?)", waiting,
        )
    conn.execute("UPDATE groups SET next_seq = ? WHERE topic = ? AND grp = ?",
                 (new[-1][0] + 1, topic, grp))
    return len(waiting)


def ack(conn: sqlite3.Connection, grp: str, leases: Sequence[tuple[str, int, int]]) -> None:
    """Settle for good (leases that are no longer these deliveries' are left alone).

    Consecutive offsets of one topic and token go in one range delete: a range that holds
    every offset from its first to its last can match no lease but those."""
    stretches = _stretches(leases)
    with transaction(conn):
        conn.executemany(
            "DELETE FROM leases WHERE topic = ? AND grp = ? AND seq BETWEEN ? AND ? "
            "AND token = ?", [(topic, grp, first, last, token)
                              for topic, token, first, last in stretches],
        )
        for topic, token, first, last in stretches:
            _cut(conn, topic, grp, token, first, last)


def nack(conn: sqlite3.Connection, topic: str, grp: str, seq: int, token: int,
         visible_at: float) -> bool:
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE leases SET owner = NULL, lease_until = NULL, token = NULL, visible_at = ? "
            "WHERE topic = ? AND grp = ? AND seq = ? AND token = ?",
            (visible_at, topic, grp, seq, token),
        )
        if cursor.rowcount > 0:
            return True
        if not _cut(conn, topic, grp, token, seq, seq):
            return False
        conn.execute("INSERT OR IGNORE INTO leases (topic, grp, seq, key, attempt, visible_at) "
                     "VALUES (?, ?, ?, NULL, 1, ?)", (topic, grp, seq, visible_at))
        return True


def dead_letter(conn: sqlite3.Connection, topic: str, grp: str, seq: int, token: int,
                group: str | None, message_id: str, key: str | None, headers: str,
                body: bytes, now: float) -> bool:
    """Store the dead letter and settle its lease in one transaction."""
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM leases WHERE topic = ? AND grp = ? AND seq = ? AND token = ?",
            (topic, grp, seq, token),
        )
        if cursor.rowcount == 0 and not _cut(conn, topic, grp, token, seq, seq):
            return False
        conn.execute(
            "INSERT INTO dead_letters (topic, grp, id, key, headers, body, dead_lettered_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (topic, group, message_id, key, headers, body, now),
        )
    return True


def release(conn: sqlite3.Connection, topics: Sequence[str], grp: str, owner: str,
            leases: Sequence[tuple[str, int, int]] | None, now: float) -> None:
    """Make leases visible again at once (all of ``owner``'s on ``topics`` when ``leases``
    is None); the attempt count is kept, so the next delivery counts one more."""
    if leases is None:
        with transaction(conn):
            conn.executemany(
                "UPDATE leases SET owner = NULL, lease_until = NULL, token = NULL, "
                f"visible_at = ?1 WHERE {_OWNED}", [(now, t, grp, owner) for t in topics],
            )
            for topic in topics:
                for lo, hi in conn.execute(
                    "SELECT lo, hi FROM lease_runs WHERE topic = ? AND grp = ? AND owner = ?",
                    (topic, grp, owner),
                ).fetchall():
                    _spill(conn, topic, grp, lo, hi, now, None, None, None)
        return
    with transaction(conn):
        conn.executemany(
            "UPDATE leases SET owner = NULL, lease_until = NULL, token = NULL, visible_at = ? "
            "WHERE topic = ? AND grp = ? AND seq = ? AND token = ?",
            [(now, topic, grp, seq, token) for topic, seq, token in leases],
        )
        for topic, token, first, last in _stretches(leases):
            for lo, hi in _cut(conn, topic, grp, token, first, last):
                _spill_range(conn, topic, grp, lo, hi, now, None, None, None)


def heartbeat(conn: sqlite3.Connection, topics: Sequence[str], grp: str, owner: str,
              now: float, lease_until: float) -> None:
    """Keep a live consumer's leases (and its group) from expiring."""
    with transaction(conn):
        conn.executemany(f"UPDATE leases SET lease_until = ?1 WHERE {_OWNED}",
                         [(lease_until, topic, grp, owner) for topic in topics])
        conn.executemany("UPDATE lease_runs SET lease_until = ? "
                         "WHERE topic = ? AND grp = ? AND owner = ?",
                         [(lease_until, topic, grp, owner) for topic in topics])
        conn.executemany("UPDATE groups SET seen_at = ? WHERE topic = ? AND grp = ?",
                         [(now, topic, grp) for topic in topics])


def seek(conn: sqlite3.Connection, topics: Sequence[str], grp: str, to: Target) -> None:
    """Move the group's cursor; its leases at or after the new cursor are dropped (their
    deliveries may still be settled, harmlessly)."""
    with transaction(conn):
        for topic in topics:
            seq = _resolve(conn, topic, to)
            if seq is None:
                continue
            conn.execute("UPDATE groups SET next_seq = ? WHERE topic = ? AND grp = ?",
                         (seq, topic, grp))
            conn.execute("DELETE FROM leases WHERE topic = ? AND grp = ? AND seq >= ?",
                         (topic, grp, seq))
            _drop_runs_from(conn, topic, grp, seq)
