"""One SQLite connection per database and process, driven by its own worker thread.

Every engine operation is a plain function ``fn(conn, *args)`` run whole on that thread, so
the event loop never blocks and one operation is one round trip. Stores are shared by every
backend of the process that opens the same database (refcounted), which is also how a
producer wakes consumers of the same process at once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from unibus.backends._engine.errors import boundary
from unibus.backends._engine.schema import prepare
from unibus.errors import ConnectionFailedError, UnibusError

__all__ = ["Store", "Waker"]

T = TypeVar("T")


class Waker:
    """An event of one loop that any thread may set."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def poke(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.event.set)


class Store:
    """A database shared by the backends of this process; see the module docstring."""

    _open: ClassVar[dict[str, Store]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: str, target: str, *, durable: bool, busy_timeout: float,
                 synchronous: str) -> None:
        self.key = key
        self.target = target
        self.durable = durable
        self.users = 0
        self.last_prune = 0.0
        self._wakers: dict[str, set[Waker]] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="unibus-engine"
        )
        self._conn: sqlite3.Connection | None = None
        self._opened = self._executor.submit(self._connect, busy_timeout, synchronous)

    @classmethod
    async def acquire(cls, key: str, target: str, *, durable: bool, busy_timeout: float,
                      synchronous: str) -> Store:
        """The store for ``key``, opened on first use; raises ConnectionFailedError."""
        with cls._lock:
            store = cls._open.get(key)
            if store is None:
                store = cls(key, target, durable=durable, busy_timeout=busy_timeout,
                            synchronous=synchronous)
                cls._open[key] = store
            store.users += 1
        try:
            await asyncio.wrap_future(store._opened)
        except BaseException as exc:
            await store.release()
            if isinstance(exc, sqlite3.Error | OSError):
                raise ConnectionFailedError(
                    f"cannot open the database {target!r}: {exc}"
                ) from exc
            raise
        return store

    async def release(self) -> None:
        """Give the store back; the last user closes the connection."""
        with self._lock:
            self.users -= 1
            if self.users > 0:
                return
            if self._open.get(self.key) is self:
                del self._open[self.key]
        await asyncio.wrap_future(self._executor.submit(self._disconnect))
        self._executor.shutdown(wait=False)

    async def call(self, error: type[UnibusError], fn: Callable[..., T], *args: Any,
                   **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on the worker thread; sqlite errors become
        ``error``."""
        job = functools.partial(self._run, fn, args, kwargs)
        with boundary(error):
            try:
                future = self._executor.submit(job)
            except RuntimeError as exc:  # executor shut down
                raise sqlite3.ProgrammingError("the database is closed") from exc
            return await asyncio.wrap_future(future)

    # -- wake-ups within the process ----------------------------------------------------------

    def watch(self, topics: tuple[str, ...], waker: Waker) -> None:
        with self._lock:
            for topic in topics:
                self._wakers.setdefault(topic, set()).add(waker)

    def unwatch(self, topics: tuple[str, ...], waker: Waker) -> None:
        with self._lock:
            for topic in topics:
                self._wakers.get(topic, set()).discard(waker)

    def notify(self, topic: str) -> None:
        """Messages arrived on ``topic``: wake this process's consumers of it."""
        with self._lock:
            wakers = list(self._wakers.get(topic, ()))
        for waker in wakers:
            waker.poke()

    # -- worker thread ------------------------------------------------------------------------

    def _connect(self, busy_timeout: float, synchronous: str) -> None:
        conn = sqlite3.connect(
            self.target, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            prepare(conn, durable=self.durable, busy_timeout=busy_timeout,
                    synchronous=synchronous)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the database is closed")
        return fn(self._conn, *args, **kwargs)
