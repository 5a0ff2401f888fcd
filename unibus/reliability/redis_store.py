"""Idempotency store on Redis (``pip install 'unibus[redis]'``): shared by every process."""

from __future__ import annotations

import time
from typing import Any

from unibus.errors import BackendNotInstalledError
from unibus.reliability.idempotency import ClaimResult, FailureRecord

__all__ = ["RedisStore"]

# claim: SET NX with the lease; if the key exists, report whether it is done or busy.
_CLAIM = """
if redis.call('SET', KEYS[1], 'busy', 'NX', 'PX', ARGV[1]) then return 'new' end
local state = redis.call('GET', KEYS[1])
if state == 'done' then return 'done' end
return 'busy'
"""


class RedisStore:
    """Open with ``await RedisStore.open("redis://127.0.0.1:6379/0")``."""

    def __init__(self, client: Any, retention: float, prefix: str) -> None:
        self._client = client
        self.retention = retention
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)

    @classmethod
    async def open(cls, url: str, retention: float = 86400.0,
                   prefix: str = "unibus:") -> RedisStore:
        try:
            import redis.asyncio as redis
        except ImportError as exc:
            raise BackendNotInstalledError("redis", "redis") from exc
        client = redis.from_url(url)
        await client.ping()
        return cls(client, retention, prefix)

    async def claim(self, key: str, lease: float) -> ClaimResult:
        result = await self._claim(keys=[self.prefix + "p:" + key], args=[int(lease * 1000)])
        value = result.decode() if isinstance(result, bytes) else str(result)
        return "new" if value == "new" else "done" if value == "done" else "busy"

    async def complete(self, key: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self.prefix + "p:" + key, "done", px=int(self.retention * 1000))
            pipe.delete(self.prefix + "f:" + key)
            await pipe.execute()

    async def release(self, key: str) -> None:
        name = self.prefix + "p:" + key
        if await self._client.get(name) == b"busy":
            await self._client.delete(name)

    async def record_failure(self, key: str) -> FailureRecord:
        name = self.prefix + "f:" + key
        now = time.time()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(name, "count", 1)
            pipe.hsetnx(name, "first", now)
            pipe.hset(name, "last", now)
            pipe.expire(name, int(self.retention))
            pipe.hmget(name, "count", "first", "last")
            *_, (count, first, last) = await pipe.execute()
        return FailureRecord(int(count), float(first), float(last))

    async def close(self) -> None:
        await self._client.aclose()
