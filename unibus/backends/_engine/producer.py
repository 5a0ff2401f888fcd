"""Publishing: concurrent calls share one transaction (group commit); consumers of this
process are woken at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from unibus.backends._engine import log
from unibus.backends._engine.codec import encode_headers
from unibus.backends._engine.options import EmbeddedOptions
from unibus.backends._engine.store import Store
from unibus.base import check_size, encoded_size
from unibus.errors import ClosedError, ConfigError, PublishError
from unibus.message import Message, Receipt

__all__ = ["EmbeddedProducer"]

_Placed = list[tuple[int, bool]]

_ENVELOPE = encoded_size(Message())  # what check_size adds to a bare body


class EmbeddedProducer:
    """Appends to the log. A call returns once its messages are committed (see the
    ``synchronous`` option); ``publish_many`` is atomic. Calls made while a commit is under
    way are committed together in the next transaction."""

    def __init__(self, store: Store, options: EmbeddedOptions, backend: str) -> None:
        self._store = store
        self._options = options
        self._backend = backend
        self._closed = False
        self._pending: list[tuple[log.Batch, asyncio.Future[_Placed]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def publish(self, topic: str, message: Message, *,
                      delay: float | None = None) -> Receipt:
        [receipt] = await self.publish_many(topic, [message], delay=delay)
        return receipt

    async def publish_many(self, topic: str, messages: Sequence[Message], *,
                           delay: float | None = None) -> list[Receipt]:
        if self._closed:
            raise ClosedError("the producer is closed")
        if delay is not None and not delay >= 0:
            raise ConfigError(f"delay must be a non-negative number of seconds, got {delay!r}")
        if not messages:
            return []
        # check_size, its test inlined for the common message (no headers, no key): this
        # runs once per message.
        limit = self._options.max_message_size - _ENVELOPE
        rows: list[log.Row] = []
        add = rows.append
        for m in messages:
            if m.headers or m.key is not None or len(m.body) > limit:
                check_size(m, limit + _ENVELOPE, self._backend)
            add((m.key, m.id, encode_headers(m), m.body))
        now = time.time()
        loop = asyncio.get_running_loop()
        placed: asyncio.Future[_Placed] = loop.create_future()
        self._pending.append(((topic, rows, now + delay if delay else None), placed))
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit())
        result = await placed
        self._store.notify(topic)
        await self._maybe_prune(now)
        return [
            Receipt(topic=topic, message_id=m.id, partition=0, offset=seq, duplicate=dup)
            for m, (seq, dup) in zip(messages, result, strict=True)
        ]

    async def _commit(self) -> None:
        while self._pending:
            waiting, self._pending = self._pending, []
            try:
                results = await self._store.call(
                    PublishError, log.append_batches, [batch for batch, _ in waiting],
                    now=time.time(), auto_create=self._options.auto_create,
                    dedup_window=self._options.dedup_window,
                )
            except Exception as exc:
                for _, placed in waiting:
                    if not placed.done():
                        placed.set_exception(exc)
                continue
            for (_, placed), result in zip(waiting, results, strict=True):
                if placed.done():
                    continue  # the caller was cancelled; its messages are published anyway
                if isinstance(result, Exception):
                    placed.set_exception(result)
                else:
                    placed.set_result(result)

    async def _maybe_prune(self, now: float) -> None:
        store = self._store
        if now - store.last_prune < self._options.prune_interval:
            return
        store.last_prune = now
        await store.call(PublishError, log.prune, now, self._options.dedup_window,
                         self._options.lease_timeout * 10)

    async def close(self) -> None:
        """Wait for the commit under way; later calls raise ClosedError."""
        self._closed = True
        committer = self._committer
        if committer is not None and not committer.done():
            await asyncio.shield(committer)
