"""Pipelined JetStream publishes: a window of messages sent back to back, their PubAcks
matched by reply subject.

nats-py's ``publish_async`` does the same per message with a semaphore, a NUID and random
token, a future and a done-callback each, and a ``PubAck`` dataclass per reply. A window
needs none of that per message: it is written as one command, its replies go to
``<prefix>.<number>`` on one wildcard subscription and land in a list slot; the window's one
future resolves when the last reply (or the deadline) arrives. The guarantee is unchanged: a
message counts as published only once its PubAck came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from unibus_nats._client import UnibusClient

__all__ = ["PubAckReply", "Publisher"]

_NO_RESPONDERS = "503"


@dataclass(frozen=True, slots=True)
class PubAckReply:
    stream: str
    seq: int
    duplicate: bool


Outcome = PubAckReply | BaseException | None  # None: no reply (yet)


class _Window:
    __slots__ = ("done", "outcomes", "remaining")

    def __init__(self, size: int) -> None:
        self.outcomes: list[Outcome] = [None] * size
        self.remaining = size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Publisher:
    """Owns one reply subscription; publishes windows and returns their outcomes in order."""

    def __init__(self, nc: UnibusClient) -> None:
        self.nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._next = 0
        self._waiting: dict[str, tuple[_Window, int]] = {}
        self._lock = asyncio.Lock()

    async def _ensure_subscribed(self) -> None:
        if self._sub is not None:
            return
        async with self._lock:
            if self._sub is None:
                prefix = self.nc.new_inbox() + "."
                self._sub = await self.nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix

    async def publish(
        self, subject: str, items: Sequence[tuple[bytes, bytes]], timeout: float
    ) -> list[Outcome]:
        """Send every (body, header block) to ``subject`` in one write; wait up to
        ``timeout`` for the PubAcks. Slots without a reply by then are ``None``; a failed
        send raises (late acks of the window are ignored)."""
        await self._ensure_subscribed()
        window = _Window(len(items))
        waiting = self._waiting
        prefix = self._prefix
        number = self._next
        self._next += len(items)
        tokens = [str(number + i) for i in range(len(items))]
        try:
            for index, token in enumerate(tokens):
                waiting[token] = (window, index)
            await self.nc.publish_batch(subject, [
                (body, headers, prefix + token)
                for (body, headers), token in zip(items, tokens, strict=True)
            ])
            if window.remaining:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns when the
                # caller's cancellation arrives with the last PubAck, and the caller goes on.
                async with asyncio.timeout(timeout):
                    await asyncio.shield(window.done)
        except TimeoutError:
            pass
        finally:
            for token in tokens:
                waiting.pop(token, None)
        return window.outcomes

    async def _on_reply(self, msg: Msg) -> None:
        found = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if found is None:
            return  # late, after its window gave up
        window, index = found
        window.outcomes[index] = _outcome(msg)
        window.remaining -= 1
        if window.remaining == 0 and not window.done.done():
            window.done.set_result(None)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):  # a lost connection already dropped it
                await sub.unsubscribe()


def _outcome(msg: Msg) -> Outcome:
    if not msg.data and msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        return nats.js.errors.NoStreamResponseError()
    try:
        resp = json.loads(msg.data)
        error = resp.get("error")
        if error is not None:
            return nats.js.errors.APIError.from_error(error)  # type: ignore[no-any-return]
        return PubAckReply(resp["stream"], resp["seq"], bool(resp.get("duplicate")))
    except Exception as exc:  # a reply that is not a PubAck
        return exc
