"""Consuming: a Kafka group member (or a manual assignment for fan-out) behind BaseConsumer.

One fetch task reads at most ``prefetch`` unsettled records (and up to ``prefetch`` more
while their delivery mark is committed); settled offsets are committed as the contiguous
prefix per partition by a commit task, on revocation and on close. Nacks go
through per-group retry topics (see docs/design/kafka-retries.md); ungrouped consumers, which
own no committed state, redeliver nacks from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from unibus import deadletter
from unibus.base import BaseConsumer, BaseDelivery
from unibus.errors import CapabilityError, ConfigError, OperationTimeoutError, UnibusError
from unibus.positions import Position
from unibus.protocols import StartAt
from unibus_kafka import _errors
from unibus_kafka._codec import (
    ATTEMPT,
    RETRY_DUE,
    RETRY_OFFSET,
    RETRY_PARTITION,
    RETRY_TIER,
    RETRY_TOPIC,
    decode,
    record_headers,
    retry_headers,
)
from unibus_kafka._delivery import KafkaDelivery, RecordRef
from unibus_kafka._offsets import PartitionOffsets
from unibus_kafka._rebalance import RebalanceListener
from unibus_kafka._topology import dlq_topic, retry_topic

if TYPE_CHECKING:
    from unibus_kafka._backend import KafkaBackend
    from unibus_kafka._transactions import KafkaTransaction, Transactions

__all__ = ["KafkaConsumer", "RecordRef"]

log = logging.getLogger("unibus.kafka")


class KafkaConsumer(BaseConsumer):
    backend_name = "kafka"

    def __init__(
        self, backend: KafkaBackend, topics: Sequence[str], group: str | None, *,
        start: StartAt | None, prefetch: int, max_attempts: int | None,
    ) -> None:
        super().__init__(topics, group, capabilities=backend.capabilities, prefetch=prefetch,
                         max_attempts=max_attempts)
        self._backend = backend
        self._options = backend.options
        self._start = start
        self._client: Any = None
        self._offsets: dict[Any, PartitionOffsets] = {}
        self._epochs: dict[Any, int] = {}
        self._revoking: set[Any] = set()
        # Bumped whenever a partition moves (reset, revoking, revoked): deliveries taken while
        # it stands still need no one-by-one liveness check.
        self._moves = 0
        self._resume_at: dict[Any, float] = {}
        self._tiers = tuple(sorted(self._options.retry_tiers))
        # retry topic -> original topic (grouped consumers only)
        self._retry: dict[str, str] = {}
        if group is not None:
            self._retry = {retry_topic(t, group, d): t for t in self.topics for d in self._tiers}
        self._marks = self._options.delivery_marks
        self._commit_lock = asyncio.Lock()
        self._fetch_lock = asyncio.Lock()
        self._room = asyncio.Event()
        self._ack_now = self._note_ack
        self._assigned = asyncio.Event()
        self._stopping = False
        self._fetcher: asyncio.Task[Any] | None = None
        # Fetched deliveries waiting for their delivery mark, as (deliveries, partitions,
        # moves) chunks; the marker commits one mark for all of them and hands them out,
        # while the fetch loop goes on fetching (see _stage).
        self._staged: list[tuple[list[BaseDelivery], list[Any], int]] = []
        self._staged_count = 0
        self._have_staged = asyncio.Event()
        self._marker: asyncio.Task[Any] | None = None
        self._last_commit = 0.0  # monotonic time of the last commit (marks included)
        self._listener_error: BaseException | None = None
        self.transactions: Transactions | None = None

    # -- opening ------------------------------------------------------------------------------

    async def open(self) -> None:
        topology = self._backend.topology
        await topology.require(self.topics)
        if self._retry:
            await topology.require(self._retry)
        o = self._options
        self._client = AIOKafkaConsumer(
            **self._backend.connection,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # fresh partitions are positioned by _assign
            isolation_level=o.isolation,
            max_poll_records=self.prefetch,
            session_timeout_ms=o.session_timeout_ms,
            heartbeat_interval_ms=o.heartbeat_interval_ms,
            fetch_max_wait_ms=100,
        )
        with _errors.connecting(self._backend.where):
            await self._client.start()
        if self._options.exactly_once and self.group is not None:
            from unibus_kafka._transactions import Transactions

            self.transactions = Transactions(self)
        if self.group is None:
            await self._assign_all()
            self._fetcher = self._spawn(self._fetch_loop())
            return
        self._client.subscribe([*self.topics, *self._retry], listener=RebalanceListener(self))
        self._fetcher = self._spawn(self._fetch_loop())
        try:
            await asyncio.wait_for(self._assigned.wait(), o.join_timeout)
        except TimeoutError:
            raise OperationTimeoutError(
                f"group {self.group!r} got no assignment within {o.join_timeout}s"
            ) from None
        if self._listener_error is not None:
            raise self._listener_error
        self._spawn(self._commit_loop())

    async def _assign_all(self) -> None:
        tps = [TopicPartition(t, p) for t in self.topics
               for p in await self._backend.topology.partitions(t)]
        self._client.assign(tps)
        starts = await self._start_offsets(tps, self._start or "latest")
        for tp, offset in starts.items():
            self._reset(tp, offset, None)

    def _reset(self, tp: Any, offset: int, metadata: str | None) -> None:
        self._client.seek(tp, offset)
        epoch = self._epochs[tp] = self._epochs.get(tp, 0) + 1
        old = self._offsets.get(tp)
        if old is not None:
            old.live = False  # its deliveries are stale now
        self._offsets[tp] = PartitionOffsets(offset, metadata if self._marks else None,
                                             tp=tp, epoch=epoch)
        self._moves += 1
        self._resume_at.pop(tp, None)

    async def _start_offsets(self, tps: list[Any], to: StartAt) -> dict[Any, int]:
        if not tps:
            return {}
        client = self._client
        with _errors.consuming("look up start offsets"):
            if to == "earliest":
                return dict(await client.beginning_offsets(tps))
            ends: dict[Any, int] = dict(await client.end_offsets(tps))
            if to == "latest":
                return ends
            if isinstance(to, datetime):
                when = to if to.tzinfo else to.replace(tzinfo=UTC)
                ms = int(when.timestamp() * 1000)
                found = await client.offsets_for_times({tp: ms for tp in tps})
                return {tp: found[tp].offset if found.get(tp) is not None else ends[tp]
                        for tp in tps}
        if isinstance(to, Position):
            try:
                offset = int(to.offset)
            except ValueError:
                raise ConfigError(f"a Kafka position has an integer offset: {to!r}") from None
            return {tp: offset for tp in tps}
        raise ConfigError(f"cannot start at {to!r}: use 'earliest', 'latest', a Position "
                          "or a datetime")

    # -- rebalance (called by RebalanceListener) ----------------------------------------------

    async def _assign(self, assigned: set[Any]) -> None:
        try:
            if assigned and not self._closing:
                await self._fix_positions(assigned)
        except Exception as exc:
            log.error("rebalance group=%s assign failed: %s", self.group, exc)
            self._listener_error = exc
        finally:
            self._assigned.set()
        log.info("rebalance group=%s assigned=%s", self.group, sorted(map(str, assigned)))

    async def _fix_positions(self, assigned: set[Any]) -> None:
        admin = self._backend.topology.admin
        with _errors.consuming(f"read committed offsets of group {self.group!r}"):
            committed = await admin.list_consumer_group_offsets(
                self.group, partitions=list(assigned)
            )
        fresh = [tp for tp in assigned
                 if committed.get(tp) is None or committed[tp].offset < 0]
        # Retry topics start at their earliest record; one lookup per distinct start.
        by_start: dict[Any, list[Any]] = {}
        for tp in fresh:
            to = "earliest" if tp.topic in self._retry else self._start or "latest"
            by_start.setdefault(to, []).append(tp)
        starts: dict[Any, int] = {}
        for to, tps in by_start.items():
            starts.update(await self._start_offsets(tps, to))
        if starts:
            # Fix the new group's positions now, so whatever is published after consumer()
            # returns reaches the group even if these partitions move to another member.
            async with self._commit_lock:
                with _errors.consuming(f"commit start positions of group {self.group!r}"):
                    await self._client.commit({tp: (o, "") for tp, o in starts.items()})
        for tp in assigned:
            if tp in starts:
                self._reset(tp, starts[tp], None)
            else:
                self._reset(tp, committed[tp].offset, committed[tp].metadata)

    async def _revoke(self, revoked: set[Any]) -> None:
        mine = {tp for tp in revoked if tp in self._offsets}
        if not mine or self._closed:
            return
        self._revoking |= mine
        self._moves += 1
        try:
            self._drop_buffered(lambda d: _part(d).tp not in mine)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._options.rebalance_drain_timeout
            while any(_part(d).tp in mine and not d.settled for d in self._in_flight):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning("rebalance group=%s: in-flight deliveries did not settle within "
                                "%.1fs; they will be redelivered", self.group,
                                self._options.rebalance_drain_timeout)
                    break
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), min(remaining, 0.1))
            try:
                await self._commit(mine)
            except Exception as exc:
                log.warning("rebalance group=%s: commit before revocation failed: %s",
                            self.group, exc)
        finally:
            for tp in mine:
                gone = self._offsets.pop(tp, None)
                if gone is not None:
                    gone.live = False
                self._epochs[tp] = self._epochs.get(tp, 0) + 1
                self._resume_at.pop(tp, None)
            self._revoking -= mine
            self._moves += 1
        log.info("rebalance group=%s revoked=%s", self.group, sorted(map(str, mine)))

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        if self.group is not None:
            # A fetch begun before the first assignment returns records that _reset then
            # throws away (their epoch is stale): wait, and fetch from the fixed positions.
            await self._assigned.wait()
        backoff = 0.1
        while not self._stopping:
            room = self.prefetch - (self._buffered() + len(self._in_flight)
                                    + self._staged_count)
            # Fetch in sizeable batches: one fetch (and one delivery mark) per few settles,
            # not one per settle.
            if room < max(1, self.prefetch // 4):
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 0.5)
                continue
            try:
                async with self._fetch_lock:
                    self._resume_due()
                    epochs = dict(self._epochs)
                    batches = await self._client.getmany(timeout_ms=self._poll_ms(),
                                                         max_records=room)
                    deliveries, handed = self._deliveries(batches, epochs)
                    if handed and self._marks and self.group is not None:
                        self._stage(deliveries, handed)
                    elif deliveries:
                        self._push_many(deliveries)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if _errors.is_transient(exc):
                    log.warning("consumer group=%s: %s; retrying", self.group, exc)
                    await asyncio.sleep(backoff)  # back off while the client reconnects
                    backoff = min(backoff * 2, 2.0)
                    continue
                try:
                    with _errors.consuming(f"consume {', '.join(self.topics)}"):
                        raise exc
                except Exception as mapped:
                    self._fail(mapped)
                return

    def _poll_ms(self) -> int:
        if not self._resume_at:
            return 200
        wait = min(self._resume_at.values()) - time.monotonic()
        return max(1, min(200, int(wait * 1000)))

    def _resume_due(self) -> None:
        now = time.monotonic()
        due = [tp for tp, at in self._resume_at.items() if at <= now]
        for tp in due:
            del self._resume_at[tp]
            if tp in self._offsets:
                self._client.resume(tp)

    def _deliveries(self, batches: dict[Any, list[Any]], epochs: dict[Any, int]
                    ) -> tuple[list[BaseDelivery], list[Any]]:
        """The deliveries of a fetch, and the partitions that handed records out."""
        out: list[BaseDelivery] = []
        handed: list[Any] = []
        now_ms = time.time() * 1000
        new = KafkaDelivery
        for tp, records in batches.items():
            offsets = self._offsets.get(tp)
            if offsets is None or tp in self._revoking or not records:
                continue
            if self._epochs.get(tp) != epochs.get(tp):
                # Reassigned while this fetch was under way: the records may predate the
                # new position. Drop them and fetch again from where the partition starts.
                self._client.seek(tp, offsets.position)
                continue
            if tp.topic in self._retry:
                due = self._retry_deliveries(tp, records, offsets, now_ms)
                if due:
                    out += due
                    handed.append(tp)
                continue
            handed.append(tp)
            # The hot path: no header is needed to hand a plain record out, so the message
            # is decoded on first use (KafkaDelivery), not here; per record, one object.
            topic, hi = tp.topic, offsets.prior_hi
            at = [record.offset for record in records]
            if at[0] >= hi:  # no earlier owner handed any of these out
                out += [new(self, record, topic, 1, offsets, offset)
                        for record, offset in zip(records, at, strict=True)]
            else:
                again = offsets.prior_rounds + 1
                out += [new(self, record, topic, again if offset < hi else 1, offsets, offset)
                        for record, offset in zip(records, at, strict=True)]
            offsets.hand_out_many(at)
        return out, handed

    def _retry_deliveries(self, tp: Any, records: list[Any], offsets: PartitionOffsets,
                          now_ms: float) -> list[BaseDelivery]:
        """Deliveries of a retry topic's due records, as their original topic and position."""
        out: list[BaseDelivery] = []
        for record in records:
            headers = record_headers(record)
            due = _number(headers.get(RETRY_DUE), 0.0)
            if due > now_ms:
                # Not due yet: park this retry partition; the others keep flowing.
                self._client.pause(tp)
                self._client.seek(tp, record.offset)
                self._resume_at[tp] = time.monotonic() + (due - now_ms) / 1000
                break
            topic = headers.get(RETRY_TOPIC) or self._retry[tp.topic]
            origin = headers.get(RETRY_OFFSET)
            # A replayed dead letter has no original offset: it is where it was written.
            position = (Position(topic, int(_number(origin, 0)),
                                 int(_number(headers.get(RETRY_PARTITION), 0)))
                        if origin is not None else Position(tp.topic, record.offset, tp.partition))
            attempt = offsets.earlier_deliveries(record.offset) + int(
                _number(headers.get(ATTEMPT), 1))
            offsets.hand_out(record.offset)
            out.append(KafkaDelivery(self, record, topic, max(attempt, 1), offsets, record.offset,
                                     decode(record, headers), position))
        return out

    def _stage(self, deliveries: list[BaseDelivery], handed: list[Any]) -> None:
        """Queue a fetch's deliveries for the marker, which hands them out once their mark
        is committed. The fetch loop goes on fetching meanwhile, so the records that come
        in while a mark is under way are all in the next mark: a mark takes a round trip
        and the group coordinator's append linger (``group.coordinator.append.linger.ms``,
        5 ms by default), and a record would otherwise wait for two or three of them."""
        self._staged.append((deliveries, handed, self._moves))
        self._staged_count += len(deliveries)
        self._have_staged.set()
        if self._marker is None:
            self._marker = self._spawn(self._mark_loop())

    async def _mark_loop(self) -> None:
        """Mark what the fetch loop staged, then hand it out; one mark per round trip.

        It ends when fetching stops, not only when cancelled: Python 3.11's
        ``asyncio.wait_for`` drops a cancellation that arrives as the awaited commit
        completes, and a marker that waited on for work that never comes would hold
        ``close()`` forever."""
        while not self._stopping:
            await self._have_staged.wait()
            self._have_staged.clear()
            if not self._staged:
                continue
            chunks, self._staged = self._staged, []
            # The mark covers every offset handed out so far: all staged records, since
            # the fetch loop hands out (to PartitionOffsets) and stages in one step.
            tps = list(dict.fromkeys(tp for _d, handed, _m in chunks for tp in handed))
            # Records under a mark stop counting against the fetch room, so the fetch loop
            # reads the next batch while this mark is committed: the consumer holds at most
            # one prefetch more than it hands out, and a batch's fetch and the previous
            # batch's mark overlap instead of taking turns.
            self._staged_count -= sum(len(d) for d, _h, _m in chunks)
            self._room.set()
            await self._mark(tps)
            moves = self._moves
            for deliveries, _handed, staged_at in chunks:
                if staged_at == moves:
                    self._push_many(deliveries)
                else:
                    self._push_many([d for d in deliveries if self._live(d)])

    async def _mark(self, tps: Iterable[Any]) -> None:
        """Record in the commit metadata what is about to be handed out (best effort)."""
        marked = [tp for tp in tps if tp in self._offsets and self._offsets[tp].needs_mark]
        for tp in marked:
            self._offsets[tp].new_mark()
        if not marked:
            return
        try:
            await self._commit(marked=marked)  # with every other settled prefix
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("consumer group=%s: delivery mark not recorded: %s", self.group, exc)

    # -- committing ---------------------------------------------------------------------------

    async def _commit(self, tps: Iterable[Any] | None = None, *, marked: Sequence[Any] = (),
                      timeout: float | None = None) -> None:
        """Commit the settled prefix of ``tps`` (default: every dirty partition), and of the
        ``marked`` partitions whether dirty or not (their delivery mark is new)."""
        if self.group is None:
            return
        lock = self._commit_lock if self.transactions is None else self.transactions.lock
        async with lock:
            chosen = [tp for tp in (self._offsets if tps is None else tps) if tp in self._offsets]
            offsets = {tp: (self._offsets[tp].commit_offset, self._offsets[tp].metadata())
                       for tp in chosen if self._offsets[tp].dirty or tp in marked}
            if not offsets:
                return
            timeout = timeout or self._options.request_timeout_ms / 1000
            if self.transactions is not None:
                await asyncio.wait_for(self.transactions.commit_offsets(offsets), timeout)
            else:
                await asyncio.wait_for(self._client.commit(offsets), timeout)
            for tp, (offset, _meta) in offsets.items():
                if tp in self._offsets:
                    self._offsets[tp].committed = offset
            if tps is None:
                self._last_commit = time.monotonic()

    async def _commit_loop(self) -> None:
        interval = self._options.commit_interval_ms / 1000
        while not self._closing:  # not only cancellation: see _mark_loop
            # Periodic commit timer. A delivery mark commits every settled prefix too, so
            # while marks go out the timer has nothing to add (and a commit of its own
            # would hold the next mark back by a round trip).
            since = time.monotonic() - self._last_commit
            await asyncio.sleep(interval - since if since < interval else interval)
            if time.monotonic() - self._last_commit < interval * 0.9:
                continue
            try:
                await self._commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer group=%s: commit failed: %s", self.group, exc)

    # -- settling -----------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> BaseDelivery:
        # A delivery can be between the buffer and the receiver while its partition is
        # revoked or sought (asyncio.wait_for runs the queue get as its own task): it is
        # stale by then, so it is dropped here instead of being handed out.
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            delivery = await super().receive(left)
            if self._live(delivery):
                return delivery
            self._forget(delivery)

    async def receive_batch(self, max_messages: int, timeout: float) -> list[BaseDelivery]:
        moves = self._moves
        batch = await super().receive_batch(max_messages, timeout)
        if moves == self._moves:  # the buffer held only live deliveries (see _revoke, _seek)
            return batch
        for delivery in [d for d in batch if not self._live(d)]:
            batch.remove(delivery)
            self._forget(delivery)
        return batch or await self.receive_batch(max_messages, timeout)

    def _live(self, delivery: BaseDelivery) -> bool:
        """May this delivery still be handed out (its partition neither moved nor moving)?"""
        part = _part(delivery)
        return part.live and part.tp not in self._revoking

    def _forget(self, delivery: BaseDelivery) -> None:
        delivery._settled = True
        self._in_flight.discard(delivery)
        if not self._in_flight:
            self._drained.set()

    def _current(self, delivery: BaseDelivery) -> PartitionOffsets | None:
        part = _part(delivery)
        if not part.live:
            log.info("consumer group=%s: %s settled after its partition moved; the record will "
                     "be delivered again", self.group, delivery)
            return None
        return part

    def _settled(self, delivery: BaseDelivery) -> None:
        offsets = self._current(delivery)
        if offsets is not None:
            offsets.settle(delivery._offset)  # type: ignore[attr-defined]
        self._room.set()

    async def _ack(self, delivery: BaseDelivery) -> None:
        self._note_ack(delivery)

    def _note_ack(self, delivery: BaseDelivery) -> None:
        # The offset is marked settled here and committed later (and before any
        # rebalance, seek or close): the ack itself needs no round trip.
        part: PartitionOffsets = delivery._part  # type: ignore[attr-defined]
        if part.live:  # _settled, inlined: this runs once per message
            offset: int = delivery._offset  # type: ignore[attr-defined]
            pending = part.pending
            if pending and pending[0] == offset and not part.done:
                pending.popleft()  # PartitionOffsets.settle's in-order case, inlined
            else:
                part.settle(offset)
        else:
            self._current(delivery)  # logs why the ack changes nothing
        self._room.set()

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        if self._current(delivery) is None:
            self._room.set()
            return
        if self.group is None:
            again = _again(delivery)
            self._spawn(self._redeliver_later(again, delay))
            self._room.set()
            return
        tier = next((t for t in self._tiers if t >= delay), self._tiers[-1])
        target = retry_topic(delivery.topic, self.group, tier)
        now = datetime.now(UTC).isoformat()
        message = delivery.message.with_headers(**{
            deadletter.FIRST_FAILURE: delivery.message.headers.get(deadletter.FIRST_FAILURE, now),
            deadletter.LAST_FAILURE: now,
        })
        headers = retry_headers(
            message, topic=delivery.topic, attempt=delivery.attempt + 1,
            due_ms=int(time.time() * 1000 + delay * 1000),
            origin=delivery.position or Position(delivery.topic, 0, 0),
        )
        await self._send(delivery, target, message, headers, "nack")
        self._settled(delivery)

    async def _redeliver_later(self, delivery: BaseDelivery, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)  # the requested redelivery delay
        if not self._closing and self._live(delivery):  # not if its partition moved meanwhile
            self._push(delivery)

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        if self._current(delivery) is None:
            self._room.set()
            return
        message = delivery.message.with_headers(**deadletter.failure_headers(
            delivery.message, topic=delivery.topic, group=self.group, reason=reason,
            attempts=delivery.attempt,
        ))
        target = dlq_topic(delivery.topic)
        await self._backend.topology.require([target], partitions=1)
        headers = message.wire_headers()
        if self.group is not None:  # where this group reads a replay from
            headers[RETRY_TIER] = f"{self._tiers[0]:g}"
        await self._send(delivery, target, message, headers, "dead_letter")
        log.error("dlq_send topic=%s dlq=%s id=%s reason=%s", delivery.topic, target,
                  message.id, reason)
        self._settled(delivery)

    async def _send(self, delivery: BaseDelivery, topic: str, message: Any,
                    headers: dict[str, str], what: str) -> None:
        """Write a retry or dead-letter record; if that fails, the offset stays pending and
        the message is delivered again here (SettlementError: 'will be redelivered')."""
        producer = self._backend.internal_producer()
        try:
            with _errors.settling(f"{what} of {message.id}"):
                future = await producer.send(topic, message, headers=headers)
                await future
        except UnibusError:
            again = _again(delivery)
            self._spawn(self._redeliver_later(again, 1.0))
            raise

    # -- seeking and closing ------------------------------------------------------------------

    async def _seek(self, to: StartAt) -> None:
        async with self._fetch_lock:
            tps = [tp for tp in self._offsets if tp.topic not in self._retry]
            if isinstance(to, Position):
                tps = [tp for tp in tps if tp.topic == to.topic
                       and (to.partition is None or tp.partition == to.partition)]
                if not tps:
                    raise ConfigError(f"{to!r} is not on a partition assigned to this consumer")
            targets = await self._start_offsets(tps, to)
            for tp, offset in targets.items():
                self._reset(tp, offset, None)
                self._offsets[tp].committed = -1  # commit the new position
            self._drop_buffered(lambda d: _part(d).live)
        with _errors.consuming("commit the sought position"):
            await self._commit(targets)

    async def _stop_fetching(self) -> None:
        self._stopping = True
        self._have_staged.set()  # a marker whose cancellation was lost wakes up and ends
        for task in (self._fetcher, self._marker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _finish(self) -> None:
        try:
            for attempt in range(3):
                try:
                    await self._commit(timeout=5.0)  # a broker that is away: redelivery
                    break
                except Exception as exc:
                    log.warning("consumer group=%s: final commit failed (%s): %s", self.group,
                                attempt + 1, exc)
        finally:
            for offsets in self._offsets.values():
                offsets.live = False
            self._offsets.clear()
            if self.transactions is not None:
                await self.transactions.close()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.stop()

    # -- exactly-once -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KafkaTransaction]:
        """Publish and acknowledge atomically (needs ``exactly_once=true`` and a group).

        ``await tx.publish(topic, message)`` writes inside the transaction and
        ``await tx.ack(delivery)`` commits the delivery's offset with it; both become visible
        to read_committed readers together, or not at all.
        """
        if self.transactions is None:
            if not self._options.exactly_once:
                raise CapabilityError("transactions", self.capabilities.reason("transactions"),
                                      backend="kafka")
            raise ConfigError("transactions commit a group's offsets: consume with a group")
        async with self.transactions.begin() as tx:
            yield tx

    def transactional_id(self) -> str:
        return self._options.transactional_id or (
            f"{self._options.client_id}-{self.group}-{uuid.uuid4().hex[:12]}"
        )


def _part(delivery: BaseDelivery) -> PartitionOffsets:
    """The offsets of the partition (and assignment) a delivery of this consumer came from."""
    part: PartitionOffsets = delivery._part  # type: ignore[attr-defined]
    return part


def _again(delivery: BaseDelivery) -> BaseDelivery:
    again: BaseDelivery = delivery.again()  # type: ignore[attr-defined]
    return again


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value else default
    except ValueError:
        return default
