"""Dead letters of a topic (and group), kept in the same database as the log."""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence

from unibus.backends._engine.log import append_in
from unibus.backends._engine.schema import transaction
from unibus.backends._engine.store import Store
from unibus.deadletter import DeadLetter
from unibus.errors import ConsumeError, PublishError
from unibus.message import Message

__all__ = ["EmbeddedDeadLetterQueue"]

#: n (storage order), group, key, headers (JSON), body.
_Stored = tuple[int, str | None, str | None, str, bytes]


def _select(conn: sqlite3.Connection, topic: str, grp: str | None,
            ids: Sequence[str] | None, limit: int | None) -> list[_Stored]:
    sql = "SELECT n, grp, key, headers, body FROM dead_letters WHERE topic = ?"
    args: list[object] = [topic]
    if grp is not None:
        sql += " AND grp = ?"
        args.append(grp)
    if ids is not None:
        sql += f" AND id IN ({','.join('?' * len(ids))})"
        args.extend(ids)
    sql += " ORDER BY n"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [(int(n), g, k, h, b) for n, g, k, h, b in conn.execute(sql, args)]


def _move(conn: sqlite3.Connection, items: Sequence[tuple[int, str, str | None, tuple[
          str | None, str, str, bytes]]], now: float) -> int:
    """Append each replayed message to its topic and delete its dead letter, atomically."""
    with transaction(conn):
        for n, topic, grp, row in items:
            append_in(conn, topic, [row], now=now, deliver_at=None, auto_create=True,
                      dedup_window=0, only_grp=grp)
            conn.execute("DELETE FROM dead_letters WHERE n = ?", (n,))
    return len(items)


def _delete(conn: sqlite3.Connection, numbers: Sequence[int]) -> int:
    with transaction(conn):
        conn.executemany("DELETE FROM dead_letters WHERE n = ?", [(n,) for n in numbers])
    return len(numbers)


class EmbeddedDeadLetterQueue:
    """The DLQ of ``topic`` for ``group``; with group None, every dead letter of the topic."""

    def __init__(self, store: Store, topic: str, group: str | None) -> None:
        self._store = store
        self.topic = topic
        self.group = group

    async def _stored(self, ids: Iterable[str] | None = None,
                      limit: int | None = None) -> list[_Stored]:
        wanted = None if ids is None else list(dict.fromkeys(ids))
        if wanted == []:
            return []
        return await self._store.call(ConsumeError, _select, self.topic, self.group, wanted,
                                      limit)

    def _letter(self, stored: _Stored) -> DeadLetter:
        _, _, key, headers, body = stored
        message = Message.from_wire(body, json.loads(headers), key=key)
        return DeadLetter.from_message(message, default_topic=self.topic)

    async def list(self, limit: int = 100) -> builtins.list[DeadLetter]:
        return [self._letter(s) for s in await self._stored(limit=limit)]

    async def get(self, message_id: str) -> DeadLetter | None:
        found = await self._stored([message_id], 1)
        return self._letter(found[0]) if found else None

    async def replay(self, ids: Iterable[str] | None = None, *, limit: int | None = None,
                     rate: float | None = None) -> int:
        stored = await self._stored(ids, limit)
        items = []
        for entry in stored:
            letter = self._letter(entry)
            message = letter.replayable()
            row = (message.key, message.id, json.dumps(message.wire_headers()), message.body)
            items.append((entry[0], letter.original_topic, entry[1], row))
        if not rate:
            if not items:
                return 0
            moved = await self._store.call(PublishError, _move, items, time.time())
            for topic in {item[1] for item in items}:
                self._store.notify(topic)
            return moved
        for index, item in enumerate(items):
            if index:
                await asyncio.sleep(1 / rate)  # pacing the replay, as asked
            await self._store.call(PublishError, _move, [item], time.time())
            self._store.notify(item[1])
        return len(items)

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        stored = await self._stored(ids)
        if not stored:
            return 0
        return await self._store.call(ConsumeError, _delete, [s[0] for s in stored])
