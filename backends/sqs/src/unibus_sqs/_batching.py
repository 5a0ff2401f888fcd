"""Group commit of per-message calls (DeleteMessage) into batch calls of up to 10 entries.

``await submit(url, entry)`` returns only when the batch call that carried the entry succeeded
for that entry; a per-entry failure raises SettlementError for that caller alone.

Entries wait for a batch call in two ways, neither of which adds latency to a lone caller:

- calls made in the same loop tick (``gather`` over a received batch's acks) join one flush;
- while ``max_in_flight`` batch calls to a queue are out, further entries queue up and go
  together as soon as a call returns: the slower the broker, the fuller the batches
  (the usual group commit). Several tasks each awaiting ``ack()`` one by one therefore share
  batch calls; a single task awaiting one ack after the other cannot, since each ack waits
  for the broker before the next is made, so it pays one round trip per ack.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from unibus.errors import SettlementError

__all__ = ["Batcher"]

BATCH = 10

#: send(queue_url, entries) -> {"Successful": [{"Id"}], "Failed": [{"Id", "Code", "Message"}]}
Send = Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any]]]

_Waiter = tuple[dict[str, Any], "asyncio.Future[None]"]


class _Queue:
    """What is waiting for one queue URL and how many batch calls to it are out."""

    __slots__ = ("flush_scheduled", "in_flight", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[_Waiter] = deque()
        self.in_flight = 0
        self.flush_scheduled = False


class Batcher:
    """Coalesce ``submit`` calls per queue URL; every call is owned by the batcher's tasks.

    :meth:`close` waits for the batch calls in flight, so no caller is left hanging.
    """

    def __init__(self, send: Send, what: str, *, max_in_flight: int = 8) -> None:
        self._send = send
        self._what = what
        self._max_in_flight = max_in_flight
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, url: str, entry: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        queue = self._queues.get(url)
        if queue is None:
            queue = self._queues[url] = _Queue()
        queue.waiting.append((entry, future))
        if len(queue.waiting) >= BATCH and queue.in_flight < self._max_in_flight:
            self._flush(url, queue)
        elif not queue.flush_scheduled:
            # Let the other calls of this tick join before the first batch goes out.
            queue.flush_scheduled = True
            loop.call_soon(self._flush, url, queue)
        await future

    def _flush(self, url: str, queue: _Queue) -> None:
        queue.flush_scheduled = False
        waiting = queue.waiting
        while waiting and queue.in_flight < self._max_in_flight:
            n = min(BATCH, len(waiting))
            chunk = [waiting.popleft() for _ in range(n)]
            queue.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._call(url, queue, chunk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not waiting and not queue.in_flight and self._queues.get(url) is queue:
            del self._queues[url]

    async def _call(self, url: str, queue: _Queue, chunk: list[_Waiter]) -> None:
        try:
            await self._settle(url, chunk)
        finally:
            queue.in_flight -= 1
            # What queued up meanwhile goes out now, in batches as full as it allows.
            self._flush(url, queue)

    async def _settle(self, url: str, chunk: list[_Waiter]) -> None:
        entries = [{"Id": str(i), **entry} for i, (entry, _) in enumerate(chunk)]
        try:
            reply = await self._send(url, entries)
        except BaseException as exc:
            error: BaseException = exc
            if not isinstance(exc, Exception):  # the batcher's task itself was cancelled
                error = SettlementError(f"{self._what} was interrupted; the message will be "
                                        "delivered again")
            for _, future in chunk:
                if not future.done():
                    future.set_exception(error)
            if error is not exc:
                raise
            return
        failed = {f["Id"]: f for f in reply.get("Failed", ())}
        for i, (_, future) in enumerate(chunk):
            if future.done():  # its caller was cancelled
                continue
            f = failed.get(str(i))
            if f is None:
                future.set_result(None)
            else:
                future.set_exception(SettlementError(
                    f"{self._what} failed: {f.get('Code')}: {f.get('Message')}"))

    async def close(self) -> None:
        """Wait for the batch calls in flight and for what still waits for one."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
