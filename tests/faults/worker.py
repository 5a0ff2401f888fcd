"""A consumer process for the fault tests: processes a topic with the idempotent consumer and
records every handler run, so the test can count losses and duplicates after SIGKILLs.

    python -m tests.faults.worker URL TOPIC GROUP STORE_DB OPTIONS_JSON
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys

import aiosqlite

import unibus
from unibus.reliability import FixedBackoff, RetryPolicy, SQLiteStore


async def main(url: str, topic: str, group: str, store_path: str, options: str) -> None:
    store = await SQLiteStore.open(store_path)
    effects = await aiosqlite.connect(store_path, isolation_level=None, timeout=30)
    await effects.execute("PRAGMA busy_timeout=30000")
    await effects.execute("CREATE TABLE IF NOT EXISTS effects (id TEXT, poison INTEGER)")
    await effects.execute("CREATE TABLE IF NOT EXISTS runs (id TEXT)")  # every handler call
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    fixed = os.environ.get("UNIBUS_FAULT_FIXED") == "1"
    lock = asyncio.Lock()  # one connection: its transactions must not interleave

    async def handler(message: unibus.Message) -> None:
        async with lock:
            await effects.execute("INSERT INTO runs(id) VALUES (?)", (message.id,))
        if message.headers.get("poison") == "1" and not fixed:
            raise ValueError("poison order")
        # The side effect and the processed marker commit in one transaction.
        async with lock:
            await effects.execute("BEGIN IMMEDIATE")
            await effects.execute("INSERT INTO effects(id, poison) VALUES (?, ?)",
                                  (message.id, int(message.headers.get("poison", "0"))))
            await SQLiteStore.mark_done(effects, SQLiteStore.key(group, message.id))
            await effects.execute("COMMIT")

    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff((0.2,)),
                         permanent=(KeyError,))  # poison fails as a transient error: 3 tries
    async with unibus.connect(url, **json.loads(options)) as bus:
        sub = await bus.subscribe(topic, handler, group=group, policy=policy,
                                  idempotency=store, concurrency=16)
        print("ready", flush=True)
        await stop.wait()
        await sub.stop()
        print("stats " + json.dumps(dataclasses.asdict(sub.stats)), flush=True)
    await effects.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
