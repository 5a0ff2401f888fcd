"""Helpers shared by the Kafka test modules (a plain module: conftest is not imported)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

#: The broker the launcher runs; KAFKA_TEST_URL points the tests elsewhere.
URL = os.environ.get("KAFKA_TEST_URL", "kafka://127.0.0.1:9092")
_parts = urllib.parse.urlsplit(URL)
ADDRESS = (_parts.hostname or "127.0.0.1", _parts.port or 9092)
BOOTSTRAP = f"{ADDRESS[0]}:{ADDRESS[1]}"

WORKER = Path(__file__).with_name("kafka_worker.py")

#: Topics the tests of this session created, deleted when it ends.
CREATED: list[str] = []


async def read_topic(topic: str, *, isolation_level: str = "read_uncommitted") -> list[Any]:
    """Every record of ``topic`` (all partitions) up to its current end, with the raw client."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                isolation_level=isolation_level)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def delete_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        doomed = sorted(t for t in present
                        if any(t == n or t.startswith(f"{n}.") for n in names))
        for start in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[start:start + 100])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def worker(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Run kafka_worker.py; yield it with its first output line; SIGKILL it at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), *args, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 90)
        assert line, "the worker exited before reporting"
        yield process, line.decode().strip()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()
