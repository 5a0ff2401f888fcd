"""Dead letters, emulated: a ``<stream>_DLQ`` stream next to each topic's stream.

The consumer writes a dead letter (failure context in headers) and only after its PubAck
terminates the original (AckTerm). The queue object reads the DLQ stream by sequence with the
stream "get next message by subject" API: oldest first, without consuming.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext

from unibus.deadletter import REPLAY_COUNT, DeadLetter, failure_headers
from unibus.errors import TopologyError
from unibus.message import Message
from unibus_nats import _names
from unibus_nats._errors import boundary
from unibus_nats._options import NATSOptions
from unibus_nats._topology import Topology
from unibus_nats._wire import REPLAY_GROUP, from_nats, header_block

__all__ = ["DeadLetterWriter", "NATSDeadLetterQueue", "PublishFn"]

#: ``await publish(topic, message, dedup_id)``: a publish acknowledged by the stream.
PublishFn = Callable[[str, Message, str], Awaitable[object]]


class DeadLetterWriter:
    """Publishes dead letters into the topic's DLQ stream and waits for the PubAck."""

    def __init__(self, js: JetStreamContext, topology: Topology, options: NATSOptions) -> None:
        self.js = js
        self.topology = topology
        self.options = options

    async def write(
        self, topic: str, group: str | None, message: Message, *, reason: str, attempts: int,
        sequence: int,
    ) -> None:
        stream = await self.topology.ensure_dlq(topic)
        context = failure_headers(message, topic=topic, group=group, reason=reason,
                                  attempts=attempts)
        dead = message.with_headers(**context)
        # The same delivery dead-lettered twice (the term was lost) is stored once.
        dedup = f"dlq:{group or ''}:{sequence}:{message.id}"
        with boundary("settle", f"dead-lettering {message.id} of {topic!r}"):
            await self.js.publish(
                _names.dlq_subject(topic, group), dead.body,
                timeout=self.options.publish_timeout,
                headers=header_block(dead, stream=stream, msg_id=dedup),  # type: ignore[arg-type]
            )


@dataclass(frozen=True, slots=True)
class _Stored:
    sequence: int
    dead: DeadLetter


class NATSDeadLetterQueue:
    """The dead letters of one topic (all of them, or one group's)."""

    def __init__(
        self, nc: Client, js: JetStreamContext, topology: Topology, publish: PublishFn,
        topic: str, group: str | None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.topology = topology
        self._publish = publish
        self.topic = topic
        self.group = group
        self._stream = _names.dlq_stream(topic)
        self._filter = ">" if group is None else _names.dlq_subject(topic, group)

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        async for stored in self._scan():
            if len(out) >= limit:
                break
            out.append(stored.dead)
        return out

    async def get(self, message_id: str) -> DeadLetter | None:
        async for stored in self._scan():
            if stored.dead.message.id == message_id:
                return stored.dead
        return None

    async def replay(
        self, ids: Iterable[str] | None = None, *, limit: int | None = None,
        rate: float | None = None,
    ) -> int:
        wanted = None if ids is None else set(ids)
        chosen = [s async for s in self._scan()
                  if wanted is None or s.dead.message.id in wanted]
        if limit is not None:
            chosen = chosen[:limit]
        replayed = 0
        started = time.monotonic()
        for stored in chosen:
            if rate:
                wait = started + replayed / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # rate limit
            message = stored.dead.replayable()
            if stored.dead.group is not None:  # for that group only: see REPLAY_GROUP
                message = message.with_headers(**{REPLAY_GROUP: stored.dead.group})
            count = message.headers.get(REPLAY_COUNT, "1")
            # A new dedup id: the original id is still in the stream's duplicate window.
            await self._publish(stored.dead.original_topic, message,
                                f"{message.id}:replay:{count}:{stored.sequence}")
            await self._delete(stored.sequence)
            replayed += 1
        return replayed

    async def purge(self, ids: Iterable[str] | None = None) -> int:
        wanted = None if ids is None else set(ids)
        doomed = [s.sequence async for s in self._scan()
                  if wanted is None or s.dead.message.id in wanted]
        for sequence in doomed:
            await self._delete(sequence)
        return len(doomed)

    # -- internals --------------------------------------------------------------------------

    async def _delete(self, sequence: int) -> None:
        with boundary("topology", f"deleting dead letter {sequence} from {self._stream}"):
            await self.js.delete_msg(self._stream, sequence)

    async def _scan(self) -> AsyncIterator[_Stored]:
        if not await self.topology.dlq_exists(self.topic):
            return
        sequence = 1
        while True:
            found = await self._next(sequence)
            if found is None:
                return
            seq, data, headers = found
            message = from_nats(data, headers)
            yield _Stored(seq, DeadLetter.from_message(message, default_topic=self.topic))
            sequence = seq + 1

    async def _next(self, sequence: int) -> tuple[int, bytes, dict[str, str]] | None:
        """The first stored message at or after ``sequence`` matching the filter."""
        request = json.dumps({"seq": sequence, "next_by_subj": self._filter}).encode()
        with boundary("consume", f"reading {self._stream}"):
            reply = await self.nc.request(
                f"$JS.API.STREAM.MSG.GET.{self._stream}", request,
                timeout=self.topology.options.publish_timeout,
            )
        answer = json.loads(reply.data)
        if "error" in answer:
            if answer["error"].get("code") == 404:
                return None
            raise TopologyError(f"reading {self._stream}: {answer['error']}")
        stored = answer["message"]
        data = base64.b64decode(stored.get("data") or "")
        headers = _parse_headers(base64.b64decode(stored.get("hdrs") or ""))
        return int(stored["seq"]), data, headers


def _parse_headers(raw: bytes) -> dict[str, str]:
    """NATS/1.0 header block -> dict (UTF-8, exact values)."""
    lines = raw.decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out
