"""Shared machinery for backends: settle-once deliveries and a draining consumer.

Backends subclass :class:`BaseConsumer` and implement its ``_``-hooks; the base owns the
rules every backend must keep (settle once, poison after ``max_attempts``, graceful drain,
no task outliving close), so they are written once and tested once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from unibus._tasks import cancel_and_wait
from unibus.capabilities import Capabilities
from unibus.errors import (
    AlreadySettledError,
    CapabilityError,
    ClosedError,
    ConfigError,
    MessageTooLargeError,
    OperationTimeoutError,
    SettlementError,
    UnibusError,
)
from unibus.message import Message
from unibus.positions import Position
from unibus.protocols import StartAt

__all__ = ["BaseConsumer", "BaseDelivery", "check_size", "encoded_size"]


def encoded_size(message: Message) -> int:
    """Bytes the message takes on the wire: body plus header names and values."""
    size = len(message.body) + len(message.key or "")
    for name, value in message.headers.items():
        size += len(name) + len(value)
    return size + 200  # envelope headers (ce_id, ce_time, ...)


def check_size(message: Message, limit: int, backend: str) -> None:
    """Raise MessageTooLargeError when ``message`` cannot fit in ``limit`` bytes."""
    size = encoded_size(message)
    if size > limit:
        raise MessageTooLargeError(size, limit, backend)


class BaseDelivery:
    """A delivery settled exactly once through its consumer's hooks.

    A backend may hand out a delivery before decoding it: pass ``message=None`` (and no
    ``position``) and implement :meth:`_decode` (and :meth:`_locate`); each runs on first read.
    """

    __slots__ = ("_consumer", "_message", "_position", "_settled", "attempt", "group", "raw",
                 "topic")

    def __init__(
        self,
        consumer: BaseConsumer,
        message: Message | None,
        topic: str,
        attempt: int,
        position: Position | None = None,
        raw: Any = None,
    ) -> None:
        # Positional on purpose, so that a backend's per-record delivery can call it once per
        # message (``BaseDelivery.__init__(self, consumer, None, topic, attempt)``) without
        # paying for keyword arguments, which cost more than the fields it sets.
        self._consumer = consumer
        self._settled = False
        self._message = message
        self.topic = topic
        self.group = consumer.group
        self.attempt = attempt
        self._position = position
        self.raw = raw  # the broker's own handle (receipt handle, delivery tag, ...)

    @property
    def message(self) -> Message:
        message = self._message
        if message is None:
            message = self._message = self._decode()
        return message

    @message.setter
    def message(self, value: Message) -> None:
        self._message = value

    @property
    def position(self) -> Position | None:
        position = self._position
        if position is None:
            position = self._position = self._locate()
        return position

    @position.setter
    def position(self, value: Position | None) -> None:
        self._position = value

    def _decode(self) -> Message:
        """The message of a delivery created without one (lazily decoding backends)."""
        raise NotImplementedError

    def _locate(self) -> Position | None:
        """The position of a delivery created without one; None where there is none."""
        return None

    @property
    def settled(self) -> bool:
        return self._settled

    def _claim(self) -> None:
        if self._settled:
            raise AlreadySettledError(f"message {self.message.id} was already settled")
        self._settled = True

    async def ack(self) -> None:
        if self._settled:  # _claim, inlined: this runs once per message
            raise AlreadySettledError(f"message {self.message.id} was already settled")
        self._settled = True
        consumer = self._consumer
        now = consumer._ack_now
        if now is None or consumer._closed:
            await consumer._settle(self, "ack", None)
            return
        try:
            now(self)
        finally:
            in_flight = consumer._in_flight
            in_flight.discard(self)
            if not in_flight:
                consumer._drained.set()

    async def nack(self, delay: float = 0.0) -> None:
        if not delay >= 0:
            raise ConfigError(f"nack delay must be a non-negative number of seconds: {delay!r}")
        self._claim()
        limit = self._consumer.max_attempts
        if limit is not None and self.attempt >= limit:
            await self._consumer._settle(
                self, "dead_letter", f"failed {self.attempt} attempts (max_attempts={limit})"
            )
        else:
            await self._consumer._settle(self, "nack", delay)

    async def dead_letter(self, reason: str) -> None:
        self._claim()
        await self._consumer._settle(self, "dead_letter", reason)

    def __repr__(self) -> str:
        return (f"<Delivery topic={self.topic} id={self.message.id} attempt={self.attempt} "
                f"settled={self._settled}>")


class BaseConsumer:
    """Buffer, hand out and track deliveries; drain on close.

    Subclasses feed deliveries with :meth:`_push` or :meth:`_push_many` (from a fetch task or
    a client callback) and implement the hooks. Flow control is the subclass's: fetch at most
    ``prefetch`` unsettled messages (:meth:`_buffered` plus the ones handed out).

    A backend whose acknowledgement is bookkeeping the loop does at once (an offset marked
    for a later commit, a client's own ack tracker) sets ``_ack_now`` to a synchronous
    callable; :meth:`BaseDelivery.ack` then calls it instead of awaiting :meth:`_ack`.
    """

    backend_name = "backend"
    _ack_now: Callable[[BaseDelivery], None] | None = None

    def __init__(
        self,
        topics: Sequence[str],
        group: str | None,
        *,
        capabilities: Capabilities,
        prefetch: int = 100,
        max_attempts: int | None = None,
    ) -> None:
        self.topics = tuple(topics)
        self.group = group
        self.capabilities = capabilities
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        # Buffered deliveries, and the receivers waiting for one: a deque and plain futures
        # cost a fraction of an asyncio.Queue's put/get, which ran once per message.
        self._queue: deque[BaseDelivery] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._ended = False  # no delivery will be pushed any more (failed or closed)
        self._in_flight: set[BaseDelivery] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self._closed = False
        self._closed_event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._error: BaseException | None = None

    # -- hooks ------------------------------------------------------------------------------

    async def _ack(self, delivery: BaseDelivery) -> None:
        raise NotImplementedError

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        raise NotImplementedError

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        raise NotImplementedError

    async def _seek(self, to: StartAt) -> None:
        raise CapabilityError("replay", self.capabilities.reason("replay"),
                              backend=self.backend_name)

    async def _stop_fetching(self) -> None:
        """Stop asking the broker for more messages."""

    async def _release(self, deliveries: list[BaseDelivery]) -> None:
        """Give unsettled deliveries back to the broker for redelivery (or let them lapse)."""

    async def _finish(self) -> None:
        """Commit what was settled and close broker resources."""

    # -- for subclasses ---------------------------------------------------------------------

    def _push(self, delivery: BaseDelivery) -> None:
        """Offer a delivery to the application (any task of the loop may call this)."""
        self._queue.append(delivery)
        if self._waiters:
            self._wake()

    def _push_many(self, deliveries: Iterable[BaseDelivery]) -> None:
        """Offer deliveries in order, waking the receivers once."""
        self._queue.extend(deliveries)
        if self._waiters and self._queue:
            self._wake()

    def _buffered(self) -> int:
        """How many deliveries wait to be received."""
        return len(self._queue)

    def _take_buffered(self) -> list[BaseDelivery]:
        """Remove and return every buffered delivery."""
        out = list(self._queue)
        self._queue.clear()
        return out

    def _drop_buffered(self, keep: Callable[[BaseDelivery], bool]) -> list[BaseDelivery]:
        """Keep the buffered deliveries ``keep`` accepts (in order); return the others."""
        kept: list[BaseDelivery] = []
        dropped: list[BaseDelivery] = []
        for delivery in self._queue:
            (kept if keep(delivery) else dropped).append(delivery)
        self._queue.clear()
        self._queue.extend(kept)
        return dropped

    def _fail(self, error: BaseException) -> None:
        """Stop the consumer with ``error``: receivers get what is buffered, then raise it."""
        self._error = error
        self._ended = True
        self._wake()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A task owned by this consumer, cancelled at close at the latest."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _settle(self, delivery: BaseDelivery, how: str, arg: Any) -> None:
        if self._closed:
            raise ClosedError("the consumer is closed; the message will be redelivered")
        try:
            if how == "ack":
                await self._ack(delivery)
            elif how == "nack":
                await self._nack(delivery, float(arg))
            else:
                await self._dead_letter(delivery, str(arg))
        finally:
            self._in_flight.discard(delivery)
            if not self._in_flight:
                self._drained.set()

    # -- public -----------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> BaseDelivery:
        queue = self._queue
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            if not queue:
                if self._closing or self._ended:
                    raise self._closed_error()
                await self._wait(deadline, timeout)
                continue
            delivery = queue.popleft()
            if self._closing:
                await self._release([delivery])
                continue
            if await self._poisoned(delivery):
                continue
            self._in_flight.add(delivery)
            self._drained.clear()
            return delivery

    async def receive_batch(self, max_messages: int, timeout: float) -> list[BaseDelivery]:
        batch = [await self.receive(timeout)]
        queue, in_flight, limit = self._queue, self._in_flight, self.max_attempts
        while len(batch) < max_messages and queue:
            item = queue.popleft()
            if self._closing:
                await self._release([item])
                continue
            # _poisoned, its test inlined: this runs once per message.
            if limit is not None and item.attempt > limit and await self._poisoned(item):
                continue
            in_flight.add(item)
            batch.append(item)
        self._drained.clear()
        return batch

    def __aiter__(self) -> AsyncIterator[BaseDelivery]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[BaseDelivery]:
        while True:
            try:
                yield await self.receive()
            except ClosedError:
                if self._error is not None:
                    raise
                return

    async def seek(self, to: StartAt) -> None:
        if self._closing:
            raise ClosedError("the consumer is closed")
        if not self.capabilities.replay and to != "latest":
            raise CapabilityError(
                "replay", self.capabilities.reason("replay"), backend=self.backend_name
            )
        # Buffered deliveries belong to the old position: give them back first.
        stale = self._take_buffered()
        if stale:
            await self._release(stale)
        await self._seek(to)

    async def close(self, drain_timeout: float = 30.0) -> None:
        if self._closing:
            await self._closed_event.wait()
            return
        self._closing = True
        try:
            await self._stop_fetching()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_timeout)
            leftovers = self._take_buffered() + [d for d in self._in_flight if not d.settled]
            self._in_flight.clear()
            if leftovers:
                await self._release(leftovers)
            await self._finish()
        finally:
            self._closed = True
            self._closed_event.set()
            self._ended = True
            self._wake()
            await cancel_and_wait(self._tasks, f"closing the consumer of {', '.join(self.topics)}")

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> BaseConsumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals --------------------------------------------------------------------------

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self, deadline: float | None, timeout: float | None) -> None:
        """Wait until something is pushed or the consumer ends; raise at ``deadline``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise OperationTimeoutError(
                f"no message on {', '.join(self.topics)} within {timeout}s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):  # still listed: timed out or cancelled
                self._waiters.remove(waiter)

    async def _poisoned(self, delivery: BaseDelivery) -> bool:
        """Dead-letter a delivery that already used up its attempts (e.g. it crashed every
        consumer that took it) instead of handing it out again."""
        limit = self.max_attempts
        if limit is None or delivery.attempt <= limit:
            return False
        delivery._settled = True
        try:
            await self._dead_letter(
                delivery, f"delivered {delivery.attempt - 1} times without success "
                f"(max_attempts={limit})"
            )
        except SettlementError:
            raise
        except UnibusError as exc:
            # The consumer is fine; this message comes back. Receivers tell the two apart.
            raise SettlementError(
                f"dead-lettering a message over its attempts failed: {exc}") from exc
        return True

    def _closed_error(self) -> BaseException:
        if self._error is not None:
            return self._error
        return ClosedError("the consumer is closed")
