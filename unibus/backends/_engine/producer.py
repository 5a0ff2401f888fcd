"""Publishing: one transaction per call, woken consumers of this process."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from unibus.backends._engine import log
from unibus.backends._engine.options import EmbeddedOptions
from unibus.backends._engine.store import Store
from unibus.base import check_size
from unibus.errors import ClosedError, ConfigError, PublishError
from unibus.message import Message, Receipt

__all__ = ["EmbeddedProducer"]


class EmbeddedProducer:
    """Appends to the log. Each call is one transaction, so ``publish_many`` is atomic;
    when it returns the messages are committed (see the ``synchronous`` option)."""

    def __init__(self, store: Store, options: EmbeddedOptions, backend: str) -> None:
        self._store = store
        self._options = options
        self._backend = backend
        self._closed = False

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
        limit = self._options.max_message_size
        for message in messages:
            check_size(message, limit, self._backend)
        rows = [(m.key, m.id, json.dumps(m.wire_headers(), separators=(",", ":")), m.body)
                for m in messages]
        now = time.time()
        placed = await self._store.call(
            PublishError, log.append, topic, rows, now=now,
            deliver_at=None if not delay else now + delay,
            auto_create=self._options.auto_create, dedup_window=self._options.dedup_window,
        )
        self._store.notify(topic)
        await self._maybe_prune(now)
        return [
            Receipt(topic=topic, message_id=m.id, partition=0, offset=seq, duplicate=dup)
            for m, (seq, dup) in zip(messages, placed, strict=True)
        ]

    async def _maybe_prune(self, now: float) -> None:
        store = self._store
        if now - store.last_prune < self._options.prune_interval:
            return
        store.last_prune = now
        await store.call(PublishError, log.prune, now, self._options.dedup_window,
                         self._options.lease_timeout * 10)

    async def close(self) -> None:
        self._closed = True
