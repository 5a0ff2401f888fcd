"""Shared fixtures for the NATS backend tests: a real nats-server with JetStream."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

import unibus

NATS_URL = os.environ.get("UNIBUS_NATS_URL", "nats://127.0.0.1:4222")


def _require_broker() -> None:
    parts = urlsplit(NATS_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"nats-server is not reachable at {host}:{port} ({exc}); start it with "
                    "`uv run python -m unibus.devstack up nats`")


@pytest.fixture
def topic() -> str:
    return f"nt-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(autouse=True)
async def _delete_topic_afterwards(topic: str) -> AsyncIterator[None]:
    """Torn down last: after every bus of the test (and its consumers) closed."""
    _require_broker()
    yield
    async with unibus.connect(NATS_URL) as admin:
        await admin.delete_topic(topic)


@pytest_asyncio.fixture
async def bus() -> AsyncIterator[unibus.Bus]:
    async with unibus.connect(NATS_URL) as bus:
        yield bus


@pytest_asyncio.fixture
async def core_bus() -> AsyncIterator[unibus.Bus]:
    _require_broker()
    async with unibus.connect(NATS_URL, mode="core") as bus:
        yield bus
