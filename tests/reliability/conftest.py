"""Fixtures for the reliability tests.

Redis and PostgreSQL are the launcher's servers (started by `scripts/test`, or
`unibus dev up stores`), at the URLs its specs give, so port overrides apply. Each test gets
its own key prefix or schema, so runs never collide.
"""

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from store_servers import drop_schema, server_url, unique_schema

import unibus


@pytest_asyncio.fixture
async def bus() -> AsyncIterator[unibus.Bus]:
    async with unibus.connect("memory://") as bus:
        yield bus


@pytest_asyncio.fixture
async def redis_url() -> str:
    return await server_url("redis")


@pytest_asyncio.fixture
async def postgres_url() -> str:
    return await server_url("postgres")


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest_asyncio.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema name, dropped (with whatever the test made in it) after."""
    name = unique_schema()
    yield name
    await drop_schema(postgres_url, name)
