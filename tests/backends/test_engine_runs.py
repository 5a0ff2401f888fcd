"""Runs: the keyless messages a fetch takes from the log, leased as one row per stretch of
consecutive offsets. Every settlement of part of a run must act as it does on a lease of
its own; these tests drive the engine's functions on one connection, with explicit times."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from unibus.backends._engine import log, queue
from unibus.backends._engine.schema import SCHEMA_VERSION, prepare

T0 = 1_000.0
LEASE = 30.0
TOPIC, GRP = "orders", "billing"


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(":memory:", isolation_level=None)) as db:
        prepare(db, durable=False, busy_timeout=1.0, synchronous="normal")
        yield db


def publish(conn: sqlite3.Connection, count: int, *, key: str | None = None,
            now: float = T0) -> None:
    rows = [(key, f"id-{now}-{i}", "{}", str(i).encode()) for i in range(count)]
    log.append_in(conn, TOPIC, rows, now=now, deliver_at=None, auto_create=True,
                  dedup_window=0)


def join(conn: sqlite3.Connection) -> None:
    queue.join(conn, [TOPIC], GRP, "earliest", False, True, T0)


def fetch(conn: sqlite3.Connection, owner: str = "a", limit: int = 100,
          now: float = T0) -> list[tuple[int, int, int]]:
    """(offset, attempt, token) of what ``owner`` is handed."""
    return [(seq, attempt, token) for _t, seq, attempt, token, *_ in
            queue.fetch(conn, [TOPIC], GRP, owner, limit, now, now + LEASE)]


def runs(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    return conn.execute("SELECT lo, hi FROM lease_runs ORDER BY lo").fetchall()


def leases(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT seq FROM leases ORDER BY seq")]


def ack(conn: sqlite3.Connection, taken: list[tuple[int, int, int]], *offsets: int) -> None:
    token = {seq: tok for seq, _a, tok in taken}
    queue.ack(conn, GRP, [(TOPIC, seq, token[seq]) for seq in offsets])


def test_a_fetch_of_keyless_messages_is_one_run_and_acks_shrink_or_cut_it(
        conn: sqlite3.Connection) -> None:
    publish(conn, 10)
    join(conn)
    taken = fetch(conn)
    assert [(seq, attempt) for seq, attempt, _ in taken] == [(i, 1) for i in range(10)]
    assert runs(conn) == [(0, 9)]
    assert leases(conn) == [], "no lease row per message"
    ack(conn, taken, 0, 1, 2)
    assert runs(conn) == [(3, 9)]
    ack(conn, taken, 6)
    assert runs(conn) == [(3, 5), (7, 9)]
    ack(conn, taken, 9, 8)
    assert runs(conn) == [(3, 5), (7, 7)]
    ack(conn, taken, 3, 4, 5, 7)
    assert runs(conn) == []
    assert fetch(conn, now=T0 + LEASE + 1) == [], "nothing acked comes back"


def test_a_stale_token_settles_nothing_in_a_run(conn: sqlite3.Connection) -> None:
    publish(conn, 3)
    join(conn)
    taken = fetch(conn)
    queue.ack(conn, GRP, [(TOPIC, 1, taken[1][2] + 1)])
    assert runs(conn) == [(0, 2)]
    assert not queue.nack(conn, TOPIC, GRP, 1, taken[1][2] + 1, T0)
    assert runs(conn) == [(0, 2)]


def test_a_nack_cuts_its_offset_out_and_it_comes_back_counted(
        conn: sqlite3.Connection) -> None:
    publish(conn, 5)
    join(conn)
    taken = fetch(conn)
    assert queue.nack(conn, TOPIC, GRP, 2, taken[2][2], T0 + 5)
    assert runs(conn) == [(0, 1), (3, 4)]
    assert leases(conn) == [2]
    assert fetch(conn, now=T0 + 1) == [], "not visible before its delay"
    [(seq, attempt, _)] = fetch(conn, now=T0 + 6)
    assert (seq, attempt) == (2, 2)


def test_a_dead_letter_cuts_its_offset_out(conn: sqlite3.Connection) -> None:
    publish(conn, 3)
    join(conn)
    taken = fetch(conn)
    assert queue.dead_letter(conn, TOPIC, GRP, 1, taken[1][2], GRP, "id", None, "{}", b"x",
                             T0)
    assert runs(conn) == [(0, 0), (2, 2)]
    assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 1
    assert not queue.dead_letter(conn, TOPIC, GRP, 1, taken[1][2], GRP, "id", None, "{}",
                                 b"x", T0), "settled once"


def test_an_expired_run_goes_to_the_next_consumer_and_its_owner_may_still_settle_it(
        conn: sqlite3.Connection) -> None:
    publish(conn, 4)
    join(conn)
    taken = fetch(conn, "a")
    ack(conn, taken, 0)
    later = T0 + LEASE + 1
    # Expired, not yet taken by anyone: the slow owner's ack still counts.
    conn.execute("BEGIN IMMEDIATE")
    queue._expire_runs(conn, TOPIC, GRP, later)
    conn.execute("COMMIT")
    assert runs(conn) == []
    assert leases(conn) == [1, 2, 3]
    ack(conn, taken, 1)
    again = fetch(conn, "b", now=later)
    assert [(seq, attempt) for seq, attempt, _ in again] == [(2, 2), (3, 2)]
    ack(conn, taken, 2)  # a's token: stale now
    assert leases(conn) == [2, 3]


def test_a_heartbeat_keeps_a_run_from_expiring(conn: sqlite3.Connection) -> None:
    publish(conn, 2)
    join(conn)
    fetch(conn, "a")
    later = T0 + LEASE - 1
    queue.heartbeat(conn, [TOPIC], GRP, "a", later, later + LEASE)
    assert fetch(conn, "b", now=T0 + LEASE + 1) == []
    assert [(s, a) for s, a, _ in fetch(conn, "b", now=later + LEASE + 1)] == [(0, 2), (1, 2)]


def test_release_gives_a_run_back_whole_or_in_part(conn: sqlite3.Connection) -> None:
    publish(conn, 6)
    join(conn)
    taken = fetch(conn, "a")
    token = taken[0][2]
    queue.release(conn, [TOPIC], GRP, "a", [(TOPIC, 4, token), (TOPIC, 5, token)], T0)
    assert runs(conn) == [(0, 3)]
    assert leases(conn) == [4, 5]
    queue.release(conn, [TOPIC], GRP, "a", None, T0)  # close: everything a still holds
    assert runs(conn) == []
    got = fetch(conn, "b")
    assert [(s, a) for s, a, _ in got] == [(i, 2) for i in range(6)], "attempts kept"


def test_keys_delays_and_gaps_stay_out_of_runs(conn: sqlite3.Connection) -> None:
    publish(conn, 2)
    publish(conn, 1, key="k")
    publish(conn, 2)
    join(conn)
    taken = fetch(conn)
    assert [seq for seq, _a, _t in taken] == [0, 1, 2, 3, 4]
    assert runs(conn) == [(0, 1), (3, 4)]
    assert leases(conn) == [2], "a keyed message keeps a lease of its own"
    ack(conn, taken, 0, 1, 2, 3, 4)
    assert runs(conn) == []
    assert leases(conn) == []


def test_seek_drops_and_trims_runs(conn: sqlite3.Connection) -> None:
    publish(conn, 10)
    join(conn)
    fetch(conn, limit=2)
    publish(conn, 10)  # past what the first fetch moved to leases
    join(conn)
    assert [seq for seq, _a, _t in fetch(conn, limit=20)] == list(range(2, 20))
    assert runs(conn) == [(0, 1), (10, 19)]
    queue.seek(conn, [TOPIC], GRP, queue.Position(topic=TOPIC, offset=15))
    assert runs(conn) == [(0, 1), (10, 14)]
    queue.seek(conn, [TOPIC], GRP, queue.Position(topic=TOPIC, offset=10))
    assert runs(conn) == [(0, 1)]
    assert [seq for seq, _a, _t in fetch(conn, limit=20)] == list(range(10, 20))


def test_a_group_holds_no_more_than_its_backlog_in_runs(conn: sqlite3.Connection) -> None:
    publish(conn, 2500)
    join(conn)
    got = fetch(conn, limit=5000)
    assert len(got) == queue._BACKLOG
    assert fetch(conn, limit=5000) == [], "the backlog counts what runs hold"


def test_pruning_keeps_what_a_run_holds(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO topics (topic, next_seq, retention, created_at) "
                 "VALUES (?, 0, 1.0, ?)", (TOPIC, T0))
    publish(conn, 4)
    join(conn)
    taken = fetch(conn)
    ack(conn, taken, 0, 1)
    log.prune(conn, T0 + 100, 0, 1e9)
    left = [row[0] for row in conn.execute("SELECT seq FROM messages ORDER BY seq")]
    assert left == [2, 3]


def test_a_schema_1_database_is_upgraded(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE lease_runs")
    conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema'")
    prepare(conn, durable=False, busy_timeout=1.0, synchronous="normal")
    assert conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),)
    publish(conn, 2)
    join(conn)
    assert len(fetch(conn)) == 2
    assert runs(conn) == [(0, 1)]


def test_an_ack_spanning_several_runs_settles_each(conn: sqlite3.Connection) -> None:
    publish(conn, 2)
    publish(conn, 1, key="k")
    publish(conn, 2)
    publish(conn, 1, key="k")
    publish(conn, 2)
    join(conn)
    taken = fetch(conn)
    assert runs(conn) == [(0, 1), (3, 4), (6, 7)]
    ack(conn, taken, 1, 2, 3, 4, 5, 6)
    assert runs(conn) == [(0, 0), (7, 7)]
    assert leases(conn) == []


def test_a_cursor_moved_back_under_runs_takes_the_log_again(
        conn: sqlite3.Connection) -> None:
    # What a process of an older unibus does when it seeks: it knows no runs.
    publish(conn, 4)
    join(conn)
    fetch(conn)
    conn.execute("UPDATE groups SET next_seq = 2")
    assert [seq for seq, _a, _t in fetch(conn, "b")] == [2, 3]
    assert runs(conn) == [(0, 1), (2, 3)]


def test_a_run_whose_messages_were_deleted_is_reported(
        conn: sqlite3.Connection, caplog: pytest.LogCaptureFixture) -> None:
    publish(conn, 3)
    join(conn)
    fetch(conn, "a")
    conn.execute("DELETE FROM messages WHERE seq = 1")  # as another program might
    queue.release(conn, [TOPIC], GRP, "a", None, T0)
    assert leases(conn) == [0, 2]
    assert "1 of the messages at offsets 0-2 in flight are no longer in the log" in caplog.text
