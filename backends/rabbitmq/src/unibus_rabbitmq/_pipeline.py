"""Publish windows and acks handed to aiormq's writer a batch at a time.

A window of publishes written to the socket in a few writes, with one future per window.

aiormq's ``Channel.basic_publish`` costs, per message, a turn of the channel lock, a put on
the connection's write queue (10 slots, so 1,000 gathered publishes mostly wait there), a
socket write, a tracked future and its callbacks. Here a window of messages is framed at
once, registered under one lock turn, and handed to the connection's writer in chunks; the
broker's confirms (``multiple`` ones included) settle slots of one window object, whose
future resolves when the last one is settled.

This is the only module that touches aiormq internals (the range is pinned in
``pyproject.toml``, the contract suite runs against it). Used: ``Channel.lock``,
``Channel.delivery_tag`` (the confirm sequence number), ``Channel.confirmations`` (tag ->
object with ``done() / cancelled() / set_result() / set_exception()``, which aiormq's
confirm and return handlers call), ``Channel.message_id_delivery_tag`` (message id -> tag,
how a ``basic.return`` finds its publish), ``Channel.write_queue``, ``Channel.number``,
``Channel.max_content_size``, ``Channel.create_future()`` (rejected when the channel closes)
and ``aiormq.abc.ChannelFrame``.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import aiormq
import aiormq.exceptions
import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic

__all__ = ["Acks", "Outgoing", "distinct_ids", "publish_window", "supports"]

#: Frames handed to the writer at a time: the broker starts on a window's first messages
#: while the rest are being framed.
CHUNK_BYTES = 256 * 1024
#: How often :meth:`Acks.drain` looks whether a channel it waits for has closed (seconds).
_DRAIN_POLL = 0.1

_FRAME = struct.Struct(">BHI")  # type, channel, size
_HEADER = struct.Struct(">HxxQ")  # class id (basic), weight (0), body size
_END = b"\xce"
_PENDING: Any = object()


class Outgoing(NamedTuple):
    exchange: str
    routing_key: str
    body: bytes
    properties: Basic.Properties


def supports(channel: Any) -> bool:
    """Whether ``channel`` is the aiormq channel this module was written against."""
    return (type(channel) is aiormq.Channel and channel.publisher_confirms
            and channel.on_return_raises and hasattr(channel, "message_id_delivery_tag"))


class _Window:
    __slots__ = ("future", "over", "pending", "results")

    def __init__(self, size: int, future: asyncio.Future[None]) -> None:
        self.results: list[BaseException | None] = [_PENDING] * size
        self.pending = size
        self.future = future
        self.over = False

    def settle(self, index: int, error: BaseException | None) -> None:
        if self.over or self.results[index] is not _PENDING:
            return
        self.results[index] = error
        self.pending -= 1
        if not self.pending and not self.future.done():
            self.future.set_result(None)

    def give_up(self, error: BaseException) -> None:
        """Every message without an answer yet fails with ``error``."""
        self.over = True
        results = self.results
        for index, result in enumerate(results):
            if result is _PENDING:
                results[index] = error


class _Slot:
    """Stands in for aiormq's per-publish confirmation future."""

    __slots__ = ("index", "window")

    def __init__(self, window: _Window, index: int) -> None:
        self.window = window
        self.index = index

    def done(self) -> bool:
        window = self.window
        return window.over or window.results[self.index] is not _PENDING

    def cancelled(self) -> bool:
        # A confirm after its window gave up (timeout, cancellation): logged at debug level.
        return self.window.over

    def set_result(self, _: object) -> None:
        self.window.settle(self.index, None)

    def set_exception(self, error: BaseException) -> None:
        self.window.settle(self.index, error)


def distinct_ids(items: Sequence[Outgoing]) -> list[list[int]]:
    """Positions of ``items`` in rounds whose message ids are distinct (one round, all of
    them, in the usual case)."""
    ids = [_message_id(item.properties) for item in items]
    if len(set(ids)) == len(ids):
        return [list(range(len(items)))]
    rounds: list[list[int]] = []
    copies: dict[str, int] = {}
    for position, message_id in enumerate(ids):
        copy = copies.get(message_id, 0)  # the n-th copy of a message goes in round n
        copies[message_id] = copy + 1
        if copy == len(rounds):
            rounds.append([])
        rounds[copy].append(position)
    return rounds


def _message_id(properties: Basic.Properties) -> str:
    """How a returned message is matched to its publish (aiormq sets one the same way)."""
    if not properties.message_id:
        properties.message_id = uuid.uuid4().hex
    return properties.message_id


_methods: dict[tuple[int, str, str], bytes] = {}


def _method_frame(channel: int, exchange: str, routing_key: str) -> bytes:
    key = (channel, exchange, routing_key)
    frame = _methods.get(key)
    if frame is None:
        if len(_methods) >= 4096:
            _methods.clear()
        frame = _methods[key] = pamqp.frame.marshal(
            Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True), channel)
    return frame


def _frames(channel: int, max_body: int, item: Outgoing, parts: list[bytes]) -> int:
    """Appends the publish's method, header and body frames; returns their size."""
    body = item.body
    size = len(body)
    _message_id(item.properties)
    header = _HEADER.pack(60, size) + item.properties.marshal()
    method = _method_frame(channel, item.exchange, item.routing_key)
    parts += (method, _FRAME.pack(2, channel, len(header)), header, _END)
    if size < max_body:
        if size:
            parts += (_FRAME.pack(3, channel, size), body, _END)
    else:
        for start in range(0, size, max_body):
            chunk = body[start:start + max_body]
            parts += (_FRAME.pack(3, channel, len(chunk)), chunk, _END)
    return len(method) + len(header) + size + 16


async def publish_window(
    channel: aiormq.Channel, items: Sequence[Outgoing], timeout: float | None
) -> list[BaseException | None]:
    """Publishes ``items`` (mandatory, confirmed) in order; per item, None once the broker
    confirmed it, else the aiormq error that concerns it (``PublishError`` for a return,
    ``DeliveryError`` for a nack, the close reason, ``TimeoutError``). Returns when every
    item has its answer."""
    if not items:
        return []
    window = _Window(len(items), channel.create_future())
    number, max_body = channel.number, channel.max_content_size
    confirmations, ids = channel.confirmations, channel.message_id_delivery_tag
    registered: list[tuple[str, int]] = []
    try:
        async with asyncio.timeout(timeout):
            async with channel.lock:
                parts: list[bytes] = []
                size = begun = 0
                for index, item in enumerate(items):
                    size += _frames(number, max_body, item, parts)
                    if size >= CHUNK_BYTES or index == len(items) - 1:
                        tag = channel.delivery_tag
                        chunk = range(begun, index + 1)
                        for i in chunk:
                            tag += 1
                            confirmations[tag] = _Slot(window, i)  # type: ignore[assignment]
                            message_id = items[i].properties.message_id or ""
                            ids[message_id] = tag
                            registered.append((message_id, tag))
                        channel.delivery_tag = tag
                        frame = ChannelFrame(payload=b"".join(parts), should_close=False)
                        try:
                            await channel.write_queue.put(frame)
                        except BaseException:
                            # Not handed to the writer: the broker never sees these.
                            channel.delivery_tag -= len(chunk)
                            for _ in chunk:
                                message_id, tag = registered.pop()
                                confirmations.pop(tag, None)
                                if ids.get(message_id) == tag:
                                    del ids[message_id]
                            raise
                        parts, size, begun = [], 0, index + 1
                        if begun < len(items):
                            await asyncio.sleep(0)  # let the writer send this chunk
            await window.future
    except TimeoutError as exc:
        window.give_up(exc)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            window.give_up(asyncio.CancelledError())
            raise
        # Not this task's cancellation: closing the channel cancelled the window's future.
        window.give_up(aiormq.exceptions.ChannelInvalidStateError(
            f"channel {number} closed before the broker confirmed"))
    except Exception as exc:  # the channel closed (rejects the window's future), ...
        window.give_up(exc)
    finally:
        window.over = True
        if not window.future.done():
            window.future.cancel()
        for message_id, tag in registered:
            if ids.get(message_id) == tag:
                del ids[message_id]
    return window.results


_ACK = struct.Struct(">BHIHHQBB")  # method frame: basic.ack (60, 80), tag, multiple=0, end


class Acks:
    """Acks given within one turn of the event loop go to the connection's writer as one
    frame (one socket write) instead of one write-queue put and socket write each.

    ``basic.ack`` has no reply in AMQP: like ``basic_ack(wait=False)``, an ack is done for
    the client once it is queued in order for the writer. Here it is queued at the end of
    the current loop turn; :meth:`drain` hands everything over (before a channel closes).
    An ack for a closed channel raises at once (the broker requeued the message).
    """

    def __init__(self) -> None:
        self._pending: dict[aiormq.Channel, list[int]] = {}
        self._scheduled = False
        # Puts waiting for room in a full write queue, with the channel each is for.
        self._puts: dict[asyncio.Task[None], aiormq.Channel] = {}

    def add(self, channel: aiormq.Channel, tag: int) -> None:
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        tags = self._pending.get(channel)
        if tags is None:
            tags = self._pending[channel] = []
        tags.append(tag)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for channel, tags in pending.items():
            if channel.is_closed:
                continue  # the broker requeues what the closed channel had unacked
            number, pack = channel.number, _ACK.pack
            frame = ChannelFrame(
                payload=b"".join([pack(1, number, 13, 60, 80, tag, 0, 0xCE) for tag in tags]),
                should_close=False)
            try:
                channel.write_queue.put_nowait(frame)
            except asyncio.QueueFull:
                put = asyncio.get_running_loop().create_task(channel.write_queue.put(frame))
                self._puts[put] = channel
                put.add_done_callback(self._forget)

    def _forget(self, put: asyncio.Task[None]) -> None:
        self._puts.pop(put, None)

    async def drain(self, poll: float = _DRAIN_POLL) -> None:
        """Everything acked so far is queued for the writer, or its channel closed.

        A write queue stays full when the connection under it died (nothing writes any
        more); a put for a closed channel is given up, since the broker requeues what that
        channel had unacked, so a consumer closing over a dead connection does not wait
        forever here."""
        self.flush()
        while self._puts:
            await asyncio.wait(list(self._puts), timeout=poll)
            for put, channel in list(self._puts.items()):
                if channel.is_closed:
                    put.cancel()
                    self._puts.pop(put, None)
