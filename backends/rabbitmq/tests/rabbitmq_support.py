"""Helpers shared by the RabbitMQ test modules (a plain module: conftest is not imported)."""

from __future__ import annotations

import os
import urllib.parse

import aio_pika

#: The broker the launcher runs; RABBITMQ_TEST_URL points the tests elsewhere.
URL = os.environ.get("RABBITMQ_TEST_URL", "amqp://guest:guest@127.0.0.1:5672/")
_parts = urllib.parse.urlsplit(URL)
ADDRESS = (_parts.hostname or "127.0.0.1", _parts.port or 5672)

#: (topic, queues) declared by the buses of this session, deleted when it ends.
DECLARED: list[tuple[str, set[str]]] = []


def remember(backend: object) -> None:
    """Record what a backend declared so the session deletes it."""
    declared = getattr(backend, "declared_topics", {})
    DECLARED.extend((topic, set(queues)) for topic, queues in declared.items())


async def delete_declared() -> None:
    connection = await aio_pika.connect(URL)
    try:
        for topic, queues in DECLARED:
            for name in sorted(queues | {f"{topic}.dlq"}):
                async with connection.channel() as channel:
                    await channel.queue_delete(name)
            for name in (topic, f"{topic}.dlx"):
                async with connection.channel() as channel:
                    await channel.exchange_delete(name)
    finally:
        await connection.close()
        DECLARED.clear()
