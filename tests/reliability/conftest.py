from collections.abc import AsyncIterator

import pytest_asyncio

import unibus


@pytest_asyncio.fixture
async def bus() -> AsyncIterator[unibus.Bus]:
    async with unibus.connect("memory://") as bus:
        yield bus
