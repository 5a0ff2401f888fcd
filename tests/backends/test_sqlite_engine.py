"""The embedded engine on a file: several processes, dead consumers, retention, dedup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest

import unibus
from unibus.topology import TopicSpec

from .helpers import eventually, quiet, take

PUBLISHER = textwrap.dedent("""
    import asyncio, sys, unibus
    async def main(url, topic, count):
        async with unibus.connect(url) as bus:
            for i in range(int(count)):
                await bus.publish(topic, unibus.Message(body=str(i).encode(), key=f"k{i % 4}"))
    asyncio.run(main(*sys.argv[1:4]))
""")

ABANDONER = textwrap.dedent("""
    import asyncio, os, sys, unibus
    async def main(url, topic, group):
        bus = await unibus.connect(url, lease_timeout=0.5)
        consumer = await bus.consumer(topic, group=group)
        delivery = await consumer.receive(timeout=20)
        print(delivery.message.id, flush=True)
        os._exit(0)  # dies holding the delivery: no ack, no close
    asyncio.run(main(*sys.argv[1:4]))
""")


async def run(script: str, *args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bus.db"


async def test_another_process_publishes_while_this_one_consumes(url: str) -> None:
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("orders", group="billing", prefetch=50)
        publisher = asyncio.create_task(run(PUBLISHER, url, "orders", "400"))
        got = await take(consumer, 400, timeout=60)
        await publisher
        for key in ("k0", "k1", "k2", "k3"):
            bodies = [int(d.message.body) for d in got if d.message.key == key]
            assert bodies == sorted(bodies), f"order of {key}"
        assert sorted(int(d.message.body) for d in got) == list(range(400))
        await quiet(consumer)


async def test_a_dead_consumers_lease_expires_and_the_message_comes_back(url: str) -> None:
    async with unibus.connect(url, lease_timeout=0.5) as bus:
        await bus.provision(TopicSpec(name="jobs", groups=("workers",)))
        sent = await bus.publish("jobs", b"resize image")
        taken = await run(ABANDONER, url, "jobs", "workers")
        assert taken.decode().strip() == sent.message_id
        consumer = await bus.consumer("jobs", group="workers")
        [again] = await take(consumer, 1)
        assert again.message.id == sent.message_id
        assert again.attempt == 2
        await quiet(consumer)


async def test_a_live_consumers_lease_is_renewed_past_lease_timeout(url: str) -> None:
    async with unibus.connect(url, lease_timeout=0.5) as bus:
        await bus.provision(TopicSpec(name="jobs", groups=("workers",)))
        await bus.publish("jobs", b"slow job")
        holder = await bus.consumer("jobs", group="workers")
        [held] = await take(holder, 1, ack=False)
        other = await bus.consumer("jobs", group="workers")
        with pytest.raises(unibus.OperationTimeoutError):  # three lease timeouts go by
            await other.receive(timeout=1.5)
        await held.ack()
        await holder.close()
        await quiet(other)


async def test_retention_prunes_only_what_every_group_has_passed(url: str) -> None:
    async with unibus.connect(url, prune_interval=0.01) as bus:
        await bus.provision(TopicSpec(name="clicks", retention=0.2, groups=("fast", "slow")))
        fast = await bus.consumer("clicks", group="fast")
        old = [unibus.Message(body=f"old{i}".encode()) for i in range(5)]
        await bus.publish_many("clicks", old)
        await take(fast, 5)

        def count(like: str = "%") -> int:
            with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
                return int(db.execute(
                    "SELECT count(*) FROM messages WHERE CAST(body AS TEXT) LIKE ?", (like,)
                ).fetchone()[0])

        async def old_ones_pruned() -> bool:
            await bus.publish("clicks", b"tick")  # publishing runs the pruning pass
            return count("old%") == 0

        # "slow" has not read anything: nothing may go, however old.
        published = time.time()

        async def retention_passed() -> bool:
            return time.time() > published + 0.25

        await eventually(retention_passed, "the retention time to pass")
        await bus.publish("clicks", b"tick")
        assert count() == 6
        slow = await bus.consumer("clicks", group="slow")
        await take(slow, 6)
        await take(fast, 1)
        await eventually(old_ones_pruned, "pruning after both groups passed")
        await slow.seek("earliest")
        [first, *_] = await take(slow, 1)
        assert first.message.body != b"old0"


async def test_dedup_window_remembers_ids_then_forgets(url: str) -> None:
    async with unibus.connect(url, dedup_window=0.3) as bus:
        message = unibus.Message(body=b"charge 10 EUR")
        first = await bus.publish("charges", message)
        second = await bus.publish("charges", message)
        assert second.duplicate
        assert second.offset == first.offset
        [a, b] = await bus.publish_many("charges", [message, message])
        assert a.duplicate
        assert b.duplicate

        async def stored_again() -> unibus.Receipt | None:
            receipt = await bus.publish("charges", message)
            return None if receipt.duplicate else receipt

        later = await eventually(stored_again, "the window to pass")
        assert later.offset == first.offset + 1


async def test_dedup_off_keeps_every_copy(url: str) -> None:
    async with unibus.connect(url, dedup_window=0) as bus:
        assert bus.capabilities.dedup_window is None
        consumer = await bus.consumer("charges", group="g")
        message = unibus.Message(body=b"x")
        receipts = [await bus.publish("charges", message) for _ in range(3)]
        assert [r.offset for r in receipts] == [0, 1, 2]
        assert len(await take(consumer, 3)) == 3


async def test_a_delayed_retry_blocks_only_its_own_key(url: str) -> None:
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("orders", group="g")
        a1, a2, b1 = (unibus.Message(body=n.encode(), key=n[0]) for n in ("a1", "a2", "b1"))
        await bus.publish(topic="orders", body=a1)
        [first] = await take(consumer, 1, ack=False)
        assert first.message.id == a1.id
        await first.nack(delay=1.0)
        await bus.publish_many("orders", [a2, b1])
        got = await take(consumer, 3)
        assert [d.message.id for d in got] == [b1.id, a1.id, a2.id]
        assert got[1].attempt == 2


async def test_a_key_is_held_by_one_consumer_at_a_time(url: str) -> None:
    async with unibus.connect(url) as bus:
        one = await bus.consumer("orders", group="g")
        await bus.publish_many("orders", [unibus.Message(body=b"1", key="k"),
                                          unibus.Message(body=b"2", key="k")])
        first = await take(one, 2, ack=False)
        assert [d.message.body for d in first] == [b"1", b"2"]
        two = await bus.consumer("orders", group="g")
        await first[0].ack()
        await quiet(two, 0.3)  # b"2" is still in flight at `one`
        await one.close(drain_timeout=0)  # gives b"2" back
        [again] = await take(two, 1)
        assert again.message.body == b"2"
        assert again.attempt == 2


async def test_replayed_dead_letter_goes_back_to_its_group_only(url: str) -> None:
    async with unibus.connect(url) as bus:
        billing = await bus.consumer("orders", group="billing")
        audit = await bus.consumer("orders", group="audit")
        sent = await bus.publish("orders", b"bad")
        [delivery] = await take(billing, 1, ack=False)
        await delivery.dead_letter("invalid")
        await take(audit, 1)
        dlq = bus.dead_letter_queue("orders", "billing")
        assert await dlq.replay() == 1
        [again] = await take(billing, 1)
        assert again.message.id == sent.message_id
        await quiet(audit)
        assert await dlq.list() == []


async def test_private_group_is_removed_at_close(url: str) -> None:
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("news")
        await bus.publish("news", b"hello")
        await take(consumer, 1)
        await consumer.close()
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            assert db.execute("SELECT count(*) FROM groups").fetchone()[0] == 0


async def test_unknown_topic_without_auto_create(url: str) -> None:
    async with unibus.connect(url, auto_create=False) as bus:
        with pytest.raises(unibus.TopicNotFoundError, match="nowhere"):
            await bus.consumer("nowhere", group="g")
        await bus.provision("somewhere")
        consumer = await bus.consumer("somewhere", group="g")
        await bus.publish("somewhere", b"x")
        await take(consumer, 1)


async def test_state_survives_reopening_the_file(url: str) -> None:
    async with unibus.connect(url) as bus:
        await bus.consumer("orders", group="g")
        await bus.publish_many("orders", [unibus.Message(body=f"{i}".encode()) for i in range(3)])
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("orders", group="g")
        got = await take(consumer, 3)
        assert [d.message.body for d in got] == [b"0", b"1", b"2"]
        assert [d.position.offset for d in got if d.position] == [0, 1, 2]


def test_url_paths(tmp_path: Path) -> None:
    with pytest.raises(unibus.ConfigError, match="does not exist"):
        unibus.connect(f"sqlite:///{tmp_path}/missing/bus.db")
    with pytest.raises(unibus.ConfigError, match="no database file"):
        unibus.connect("sqlite:///")
    bus = unibus.connect(f"sqlite:///{tmp_path}/bus.db?lease_timeout=2")
    assert bus.backend.options.lease_timeout == 2  # type: ignore[attr-defined]
    with pytest.raises(unibus.ConfigError, match="lease_timeout"):
        unibus.connect(f"sqlite:///{tmp_path}/bus.db?lease_timeout=-1")


def test_capabilities_name_their_limits() -> None:
    durable = unibus.connect("sqlite:///bus.db").capabilities
    memory = unibus.connect("memory://").capabilities
    assert "memory" not in json.dumps(dict(durable.reasons))
    assert "memory" in memory.reason("retention")
    assert durable.replay
    assert durable.dedup_window == 120.0


async def test_a_database_with_the_first_lease_indexes_is_upgraded(url: str) -> None:
    async with unibus.connect(url) as bus:
        await bus.publish("orders", unibus.Message(body=b"before"))
    path = url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as the first releases had them
        conn.execute("CREATE INDEX leases_by_key ON leases (topic, grp, key, seq)")
        conn.execute("CREATE INDEX leases_by_owner ON leases (owner)")
        conn.commit()
    async with unibus.connect(url) as bus:
        await bus.publish("orders", unibus.Message(body=b"after"))
        consumer = await bus.consumer("orders", group="billing")
        got = await take(consumer, 2)
        await consumer.close()
    assert [d.message.body for d in got] == [b"before", b"after"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master "
                                                "WHERE type = 'index' AND tbl_name = 'leases'")}
    assert not names & {"leases_by_key", "leases_by_owner", "leases_owned"}
    assert {"leases_keyed", "leases_waiting", "leases_leased"} <= names


async def test_a_database_with_the_first_lease_table_is_upgraded_with_its_leases(
        url: str) -> None:
    async with unibus.connect(url) as bus:
        await bus.publish_many("orders", [unibus.Message(body=b"one"),
                                          unibus.Message(body=b"two")])
        consumer = await bus.consumer("orders", group="billing")
        await take(consumer, 1, ack=False)
        await consumer.close()  # both were fetched: released, their attempts kept
    path = url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as the first releases had it
        conn.execute("ALTER TABLE leases RENAME TO leases_new")
        conn.execute("CREATE TABLE leases (topic TEXT NOT NULL, grp TEXT NOT NULL, "
                     "seq INTEGER NOT NULL, key TEXT, attempt INTEGER NOT NULL, "
                     "visible_at REAL NOT NULL, owner TEXT, lease_until REAL, token INTEGER, "
                     "PRIMARY KEY (topic, grp, seq))")
        conn.execute("INSERT INTO leases SELECT * FROM leases_new")
        conn.execute("DROP TABLE leases_new")
        conn.commit()
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("orders", group="billing")
        got = await take(consumer, 2)
        await consumer.close()
    assert [(d.message.body, d.attempt) for d in got] == [(b"one", 2), (b"two", 2)]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'leases'").fetchone()[0]
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master "
                                                "WHERE type = 'index' AND tbl_name = 'leases'")}
    assert "WITHOUT ROWID" in sql
    assert {"leases_keyed", "leases_waiting", "leases_leased"} <= names


async def test_a_batch_mixing_known_and_new_ids_stores_only_the_new(url: str) -> None:
    async with unibus.connect(url) as bus:
        known = unibus.Message(body=b"known")
        first = await bus.publish("charges", known)
        fresh = [unibus.Message(body=b"a"), unibus.Message(body=b"b")]
        receipts = await bus.publish_many("charges", [fresh[0], known, fresh[1], fresh[1]])
        assert [r.duplicate for r in receipts] == [False, True, False, True]
        assert receipts[1].offset == first.offset
        assert receipts[3].offset == receipts[2].offset
        consumer = await bus.consumer("charges", group="audit")
        got = await take(consumer, 3)
        assert [d.message.body for d in got] == [b"known", b"a", b"b"]
        with pytest.raises(unibus.OperationTimeoutError):
            await consumer.receive(timeout=0.3)
        await consumer.close()


async def test_a_nack_among_acks_comes_back_alone(url: str) -> None:
    async with unibus.connect(url) as bus:
        await bus.publish_many("jobs", [unibus.Message(body=str(i).encode()) for i in range(6)])
        consumer = await bus.consumer("jobs", group="workers")
        got = await take(consumer, 6, ack=False)
        for delivery in got:
            if delivery.message.body == b"3":
                await delivery.nack()
            else:
                await delivery.ack()
        [again] = await take(consumer, 1)
        assert again.message.body == b"3"
        assert again.attempt == 2
        with pytest.raises(unibus.OperationTimeoutError):
            await consumer.receive(timeout=0.3)
        await consumer.close()


async def test_a_database_of_a_newer_schema_is_refused_untouched(url: str) -> None:
    async with unibus.connect(url) as bus:
        await bus.publish("orders", unibus.Message(body=b"kept"))
    path = url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as a later unibus would leave it
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
        conn.commit()
    with pytest.raises(unibus.ConnectionFailedError, match="newer unibus"):
        async with unibus.connect(url) as bus:
            await bus.publish("orders", unibus.Message(body=b"refused"))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == ("99",)
        assert conn.execute("SELECT body FROM messages").fetchall() == [(b"kept",)]
