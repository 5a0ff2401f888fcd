"""Helpers for the tests against the launcher's Redis and PostgreSQL."""

import asyncio
import uuid

import pytest

from unibus.devstack import DevStack


async def server_url(name: str) -> str:
    """The URL of the launcher's ``name``; fail (never skip) when it is not running."""
    [status] = await asyncio.to_thread(DevStack().status, [name])
    if status.state not in ("running", "external"):
        pytest.fail(f"{name} is {status.state}; start it with `uv run unibus dev up {name}`")
    return status.url


async def drop_schema(url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def unique_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"
