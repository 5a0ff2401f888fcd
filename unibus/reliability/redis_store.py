"""Idempotency store on Redis (``pip install 'unibus[redis]'``): shared by every process.

Claims and completed ids are string keys whose expiry is the lease or the retention window
(Redis's clock decides); each operation that reads and writes is one Lua script, so it is
atomic. Keys are binary-safe: any message id works.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from unibus.errors import (
    BackendNotInstalledError,
    ClosedError,
    ConfigError,
    ConnectionFailedError,
    InvalidMessageError,
    OperationTimeoutError,
    UnibusError,
    map_exceptions,
)
from unibus.reliability.idempotency import ClaimResult, FailureRecord

__all__ = ["RedisStore"]

# A lease of 0 ms claims nothing that would outlive the call: the claim is new and expired.
_CLAIM = """
local state = redis.call('GET', KEYS[1])
if state == 'done' then return 'done' end
if state then return 'busy' end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[1], 'busy', 'PX', ARGV[1]) end
return 'new'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == 'busy' then redis.call('DEL', KEYS[1]) end
"""

# The failure record lives for the retention window after the last failure.
_FAILURE = """
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSETNX', KEYS[1], 'first', ARGV[1])
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HMGET', KEYS[1], 'count', 'first', 'last')
"""


def _redis_errors(context: str) -> contextlib.AbstractContextManager[None]:
    import redis.exceptions as errors

    return map_exceptions({
        errors.TimeoutError: OperationTimeoutError,
        errors.ConnectionError: ConnectionFailedError,  # incl. auth refused, still loading
        errors.RedisError: UnibusError,
        TimeoutError: OperationTimeoutError,
        OSError: ConnectionFailedError,
        ValueError: ConfigError,  # an unparseable URL
    }, context=context)


def _milliseconds(value: float, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return int(value * 1000)


class RedisStore:
    """Open with ``await RedisStore.open("redis://127.0.0.1:6379/0")``.

    Every key starts with ``prefix``, so several applications (or tests) can share a server.
    Safe for concurrent use by many workers and processes.
    """

    def __init__(self, client: Any, retention: float, prefix: str) -> None:
        self._client = client
        self.retention = retention
        self.prefix = prefix
        self._retention_ms = max(1, _milliseconds(retention, "retention"))
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._failure = client.register_script(_FAILURE)
        self._closed = False

    @classmethod
    async def open(cls, url: str, retention: float = 86400.0,
                   prefix: str = "unibus:") -> RedisStore:
        try:
            import redis.asyncio as redis
        except ImportError as exc:
            raise BackendNotInstalledError("redis", "redis") from exc
        _milliseconds(retention, "retention")
        if not isinstance(prefix, str):
            raise ConfigError(f"prefix must be a str, got {type(prefix).__name__}")
        if not isinstance(url, str):
            raise ConfigError(f"url must be a str, got {type(url).__name__}")
        with _redis_errors(f"Redis at {url.split('@')[-1]}"):
            # Without timeouts a server that stops answering would hang every worker.
            client = redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
            try:
                await client.ping()
            except BaseException:
                await client.aclose()
                raise
        return cls(client, retention, prefix)

    def _name(self, kind: str, key: str) -> bytes:
        if not isinstance(key, str):
            raise InvalidMessageError(
                f"an idempotency key must be a str, got {type(key).__name__}")
        return f"{self.prefix}{kind}:".encode() + key.encode("utf-8", "surrogatepass")

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise ClosedError("the Redis idempotency store is closed")
        with _redis_errors(f"idempotency store {what}"):
            yield

    async def claim(self, key: str, lease: float) -> ClaimResult:
        name, lease_ms = self._name("p", key), _milliseconds(lease, "lease")
        with self._errors("claim"):
            result = await self._claim(keys=[name], args=[lease_ms])
        value = result.decode() if isinstance(result, bytes) else str(result)
        return "new" if value == "new" else "done" if value == "done" else "busy"

    async def complete(self, key: str) -> None:
        done, failures = self._name("p", key), self._name("f", key)
        with self._errors("complete"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(done, "done", px=self._retention_ms)
                pipe.delete(failures)
                await pipe.execute()

    async def release(self, key: str) -> None:
        name = self._name("p", key)
        with self._errors("release"):
            await self._release(keys=[name])

    async def record_failure(self, key: str) -> FailureRecord:
        name = self._name("f", key)
        with self._errors("record_failure"):
            count, first, last = await self._failure(
                keys=[name], args=[repr(time.time()), self._retention_ms])
        return FailureRecord(int(count), float(first), float(last))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()
