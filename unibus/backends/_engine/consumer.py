"""Consuming: a fetch loop leasing messages to one member of a group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence

from unibus.backends._engine import queue
from unibus.backends._engine.delivery import EmbeddedDelivery
from unibus.backends._engine.options import EmbeddedOptions
from unibus.backends._engine.store import Store, Waker
from unibus.base import BaseConsumer, BaseDelivery
from unibus.capabilities import Capabilities
from unibus.deadletter import failure_headers
from unibus.errors import (
    ConnectionFailedError,
    ConsumeError,
    OperationTimeoutError,
    SettlementError,
    UnibusError,
)
from unibus.protocols import StartAt

__all__ = ["EmbeddedConsumer"]

log = logging.getLogger("unibus.sqlite")

_FIRST_POLL = 0.005  # seconds; the pause doubles up to poll_interval while idle


class EmbeddedConsumer(BaseConsumer):
    """A member of group ``grp`` (a private group when the user's ``group`` is None)."""

    def __init__(
        self, store: Store, topics: Sequence[str], group: str | None, grp: str, *,
        capabilities: Capabilities, options: EmbeddedOptions, backend: str, prefetch: int,
        max_attempts: int | None,
    ) -> None:
        super().__init__(topics, group, capabilities=capabilities, prefetch=prefetch,
                         max_attempts=max_attempts)
        self.backend_name = backend
        self._store = store
        self._options = options
        self._grp = grp
        self._owner = uuid.uuid4().hex
        self._stopping = False
        self._waker = Waker()
        self._fetcher: asyncio.Task[None] | None = None
        self._refill = max(1, prefetch // 4)
        self._acks: list[tuple[str, int, int]] = []
        self._ack_flusher: asyncio.Task[None] | None = None
        self._ack_now = self._note_ack

    def start(self) -> None:
        self._store.watch(self.topics, self._waker)
        self._fetcher = self._spawn(self._fetch_loop())

    # -- fetching ---------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        pause = _FIRST_POLL
        beat_every = self._options.lease_timeout / 3
        next_beat = time.monotonic() + beat_every
        wake = self._waker.event
        while not self._stopping:
            wake.clear()  # before fetching, so a poke during the fetch is not lost
            room = self.prefetch - self._buffered() - len(self._in_flight)
            got = 0
            try:
                # Refill in batches: not for every single settled delivery.
                if room > 0 and (room >= self._refill or (not self._buffered()
                                 and not self._in_flight)):
                    got = await self._fetch(room)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + beat_every
                    now = time.time()
                    await self._store.call(ConsumeError, queue.heartbeat, self.topics,
                                           self._grp, self._owner, now,
                                           now + self._options.lease_timeout)
            except (OperationTimeoutError, ConnectionFailedError):
                got = 0  # the database is busy: retry after a pause
            except Exception as exc:
                self._fail(exc if isinstance(exc, ConsumeError)
                           else ConsumeError(f"fetching failed: {exc!r}"))
                return
            if got and got >= room:
                pause = _FIRST_POLL
                await asyncio.sleep(0)  # let receivers run before fetching more
                continue
            if got:
                pause = _FIRST_POLL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), pause if room > 0 else beat_every)
            if not wake.is_set():
                pause = min(pause * 2, self._options.poll_interval)

    async def _fetch(self, room: int) -> int:
        now = time.time()
        taken = await self._store.call(
            ConsumeError, queue.fetch, self.topics, self._grp, self._owner, room, now,
            now + self._options.lease_timeout,
        )
        self._push_many([EmbeddedDelivery(self, topic, seq, attempt, token, key, headers, body)
                         for topic, seq, attempt, token, key, headers, body in taken])
        return len(taken)

    # -- settlement hooks -------------------------------------------------------------------

    async def _ack(self, delivery: BaseDelivery) -> None:
        self._note_ack(delivery)

    def _note_ack(self, delivery: BaseDelivery) -> None:
        # Acks are committed in batches, a moment later (like Kafka's offset commits): one
        # database round trip for many acks. A crash in between redelivers the message
        # (at-least-once); every other settlement, seek and close commits them first.
        seq, token = delivery.raw
        self._acks.append((delivery.topic, seq, token))
        if self._ack_flusher is None or self._ack_flusher.done():
            self._ack_flusher = self._spawn(self._commit_acks())

    async def _commit_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            try:
                await self._store.call(SettlementError, queue.ack, self._grp, batch)
            except UnibusError:
                log.warning("could not commit %d acks; the messages will be redelivered",
                            len(batch), exc_info=True)
        self._waker.event.set()

    async def _flush_acks(self) -> None:
        """Commit every ack given so far."""
        flusher = self._ack_flusher
        if flusher is not None and not flusher.done():
            await asyncio.shield(flusher)
        if self._acks:
            await self._commit_acks()

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        seq, token = delivery.raw
        await self._store.call(SettlementError, queue.nack, delivery.topic, self._grp, seq,
                               token, time.time() + delay)
        self._store.notify(delivery.topic)

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        seq, token = delivery.raw
        message = delivery.message
        headers = {**message.wire_headers(), **failure_headers(
            message, topic=delivery.topic, group=self.group, reason=reason,
            attempts=delivery.attempt,
        )}
        await self._store.call(
            SettlementError, queue.dead_letter, delivery.topic, self._grp, seq, token,
            self.group, message.id, message.key, json.dumps(headers, separators=(",", ":")),
            message.body, time.time(),
        )
        self._waker.event.set()

    async def _seek(self, to: StartAt) -> None:
        await self._flush_acks()
        await self._store.call(ConsumeError, queue.seek, self.topics, self._grp, to)
        self._waker.event.set()

    # -- closing ----------------------------------------------------------------------------

    async def _stop_fetching(self) -> None:
        self._stopping = True
        self._waker.event.set()
        if self._fetcher is not None:
            with contextlib.suppress(Exception):
                await self._fetcher

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        await self._flush_acks()
        leases = [(d.topic, d.raw[0], d.raw[1]) for d in deliveries]
        with contextlib.suppress(UnibusError):  # unreleased leases lapse after lease_timeout
            await self._store.call(SettlementError, queue.release, self.topics, self._grp,
                                   self._owner, leases, time.time())
        for topic in {d.topic for d in deliveries}:
            self._store.notify(topic)

    async def _finish(self) -> None:
        self._store.unwatch(self.topics, self._waker)
        await self._flush_acks()
        try:
            if self.group is None:
                await self._store.call(ConsumeError, queue.leave, self.topics, self._grp)
            else:
                await self._store.call(ConsumeError, queue.release, self.topics, self._grp,
                                       self._owner, None, time.time())
        finally:
            for topic in self.topics:  # released leases: wake the other members here
                self._store.notify(topic)
