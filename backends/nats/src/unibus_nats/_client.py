"""nats-py's client with its two per-message header hot paths replaced.

nats-py encodes a header dict on every publish (a regex, ``strip`` and ``translate`` per
header) and parses every received header block line by line with a per-character
``any(c.isspace() ...)`` over each name. With the envelope's eight headers per message that
was most of unibus's client-side cost per message. This subclass:

- sends a :class:`HeaderBlock` (bytes, built once per message by ``_wire.header_block``)
  as it is, where nats-py would encode a dict; dicts still go through nats-py;
- writes a whole window of such messages as one command (:meth:`UnibusClient.publish_batch`)
  instead of one ``publish`` call, with its checks and flush kick, per message;
- parses plain header blocks (no inline status) with the same result as nats-py's parser
  (names: ASCII, no whitespace, stripped; values: stripped, UTF-8 with replacement) in a
  few bytes operations per line; status blocks (heartbeats, 404/408) go to nats-py.

Both hooks are private methods of nats-py's ``Client``; the NATS tests exercise them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client
from nats.errors import (
    BadSubjectError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)
from nats.protocol.command import hpub_cmd

__all__ = ["HeaderBlock", "UnibusClient"]

# An ASCII name without whitespace or ':' is what nats-py's parser keeps verbatim.
_PLAIN_NAME = re.compile(rb"[!-9;-~]+")
_HEADER_LINE = b"NATS/1.0\r\n"
_CHUNK = 256 * 1024  # bytes of commands handed to the client's pending buffer at once


class HeaderBlock(bytes):
    """A complete, already validated NATS header block (``NATS/1.0\\r\\n...\\r\\n\\r\\n``)."""

    __slots__ = ()


class UnibusClient(Client):
    async def publish_batch(
        self, subject: str, messages: Sequence[tuple[bytes, bytes, str]]
    ) -> None:
        """Publish every (body, header block, reply subject) to ``subject``, written in
        commands of up to ``_CHUNK`` bytes, with the checks ``publish`` makes for each (the
        subject and replies are the caller's, already valid)."""
        if self.is_closed:
            raise ConnectionClosedError
        if self.is_draining_pubs:
            raise ConnectionDrainingError
        if not subject:
            raise BadSubjectError
        target = subject.encode()
        parts: list[bytes] = []
        size = 0
        for body, headers, reply in messages:
            if len(body) > self._max_payload:
                raise MaxPayloadError
            part = b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
                target, reply.encode(), len(headers), len(headers) + len(body), headers, body)
            parts.append(part)
            size += len(part)
            if size >= _CHUNK:
                await self._send_chunk(parts, size)
                parts, size = [], 0
        if parts:
            await self._send_chunk(parts, size)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _send_chunk(self, parts: list[bytes], size: int) -> None:
        if not self.is_connected and (
                self._max_pending_size <= 0
                or size + self._pending_data_size > self._max_pending_size):
            raise OutboundBufferLimitError  # what publish raises while reconnecting
        self.stats["out_msgs"] += len(parts)
        self.stats["out_bytes"] += size
        await self._send_command(b"".join(parts))

    async def _send_publish(
        self, subject: str, reply: str, payload: bytes, payload_size: int,
        headers: Any,
    ) -> None:
        if type(headers) is not HeaderBlock:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        if subject == "":
            raise BadSubjectError
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(hpub_cmd(subject, reply, headers, payload))
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _process_headers(self, headers: Any) -> dict[str, str] | None:
        if not headers or not headers.startswith(_HEADER_LINE):
            # Empty, or a status line ("NATS/1.0 408 ..."): nats-py's own handling.
            result: dict[str, str] | None = await super()._process_headers(headers)
            return result
        out: dict[str, str] = {}
        for line in headers[len(_HEADER_LINE):].split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip()
            if _PLAIN_NAME.fullmatch(name) is not None:
                key = name.decode("ascii")
            else:
                key = _odd_name(name)
                if key is None:
                    continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out or None


def _odd_name(name: bytes) -> str | None:
    """nats-py's rule for the rare name that is not plain printable ASCII: kept when it is
    ASCII without whitespace (control characters included), dropped otherwise."""
    try:
        key = name.decode("ascii")
    except UnicodeDecodeError:
        return None
    return None if any(c.isspace() for c in key) else key
