"""A first throughput reading of the built-in backends against raw sqlite3.

    uv run python bench/quick_sqlite.py [COUNT]

Publishes COUNT (default 100,000) 200-byte messages in batches of 1,000 and consumes them with
an acknowledgement each, through unibus on sqlite:// and memory://, and through sqlite3 used
directly (executemany appends to one table, then read-and-delete in batches, WAL mode).
A benchmark, not a test: numbers vary by machine.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time

import unibus

BATCH = 1000
BODY = os.urandom(100).hex().encode()  # 200 bytes


async def via_unibus(url: str, count: int) -> tuple[float, float]:
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("bench", group="g", prefetch=BATCH)
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            await bus.publish_many(
                "bench", [unibus.Message(body=BODY) for _ in range(min(BATCH, count - start))]
            )
        published = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        while received < count:
            for delivery in await consumer.receive_batch(BATCH, timeout=30):
                await delivery.ack()
                received += 1
        consumed = time.perf_counter() - started
    return count / published, count / consumed


def via_sqlite3(path: str, count: int) -> tuple[float, float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        with db:
            db.executemany("INSERT INTO log (body) VALUES (?)",
                           [(BODY,) for _ in range(min(BATCH, count - start))])
    published = time.perf_counter() - started
    started = time.perf_counter()
    received = 0
    while received < count:
        rows = db.execute("SELECT seq, body FROM log ORDER BY seq LIMIT ?", (BATCH,)).fetchall()
        with db:
            db.executemany("DELETE FROM log WHERE seq = ?", [(seq,) for seq, _ in rows])
        received += len(rows)
    consumed = time.perf_counter() - started
    db.close()
    return count / published, count / consumed


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("unibus sqlite://", *await via_unibus(f"sqlite:///{tmp}/bus.db", count)),
            ("unibus memory://", *await via_unibus("memory://bench", count)),
            ("raw sqlite3 (WAL)", *via_sqlite3(f"{tmp}/raw.db", count)),
        ]
    print(f"{count} x {len(BODY)} B, batches of {BATCH}, one ack per message")
    print(f"{'':20} {'publish msg/s':>14} {'consume+ack msg/s':>18}")
    for name, pub, con in rows:
        print(f"{name:20} {pub:14,.0f} {con:18,.0f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
