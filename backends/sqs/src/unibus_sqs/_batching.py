"""Coalescing of per-message calls made in the same loop tick into batch calls of 10."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from unibus.errors import SettlementError

__all__ = ["Batcher"]

BATCH = 10

#: send(queue_url, entries) -> {"Successful": [{"Id"}], "Failed": [{"Id", "Code", "Message"}]}
Send = Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any]]]


class Batcher:
    """``await submit(url, entry)`` returns when the batch call that carried it succeeded.

    The first caller of a tick leads: it yields once so calls made meanwhile join, then sends
    them in batches of 10 and settles everyone's future.
    """

    def __init__(self, send: Send, what: str) -> None:
        self._send = send
        self._what = what
        self._pending: dict[str, list[tuple[dict[str, Any], asyncio.Future[None]]]] = {}

    async def submit(self, url: str, entry: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._pending.setdefault(url, [])
        waiting.append((entry, future))
        if len(waiting) == 1:
            try:
                await asyncio.sleep(0)  # let the other calls of this tick join the batch
            finally:
                batch = self._pending.pop(url, [])
                await asyncio.shield(self._flush(url, batch))
        await future

    async def _flush(self, url: str, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]
                     ) -> None:
        chunks = [batch[i:i + BATCH] for i in range(0, len(batch), BATCH)]
        await asyncio.gather(*(self._flush_chunk(url, c) for c in chunks))

    async def _flush_chunk(
        self, url: str, chunk: list[tuple[dict[str, Any], asyncio.Future[None]]]
    ) -> None:
        entries = [{"Id": str(i), **entry} for i, (entry, _) in enumerate(chunk)]
        try:
            reply = await self._send(url, entries)
        except BaseException as exc:
            for _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        failed = {int(f["Id"]): f for f in reply.get("Failed", [])}
        for i, (_, future) in enumerate(chunk):
            if future.done():
                continue
            if i in failed:
                f = failed[i]
                future.set_exception(SettlementError(
                    f"{self._what} failed: {f.get('Code')}: {f.get('Message')}"))
            else:
                future.set_result(None)
