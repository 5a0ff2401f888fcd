"""A delivery of the embedded engine: the stored row, decoded into a Message on first use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from unibus.base import BaseDelivery
from unibus.message import Message
from unibus.positions import Position

if TYPE_CHECKING:
    from unibus.backends._engine.consumer import EmbeddedConsumer

__all__ = ["EmbeddedDelivery"]


class EmbeddedDelivery(BaseDelivery):
    """``message`` and ``position`` are built when first read, so handing a message out
    costs no JSON decoding and a consumer that only settles never pays for it. ``raw`` is
    ``(offset, lease token)``."""

    __slots__ = ("_stored",)

    def __init__(self, consumer: EmbeddedConsumer, topic: str, seq: int, attempt: int,
                 token: int, key: str | None, headers: str, body: bytes) -> None:
        # BaseDelivery.__init__, inlined: this runs once per message.
        self._consumer = consumer
        self._settled = False
        self._message = None
        self._position = None
        self.topic = topic
        self.group = consumer.group
        self.attempt = attempt
        self.raw = (seq, token)
        self._stored: tuple[str | None, str, bytes] | None = (key, headers, body)

    def _decode(self) -> Message:
        key, headers, body = self._stored  # type: ignore[misc]
        message = Message.from_wire(body, json.loads(headers), key=key)
        self._stored = None
        return message

    def _locate(self) -> Position:
        return Position(self.topic, self.raw[0], 0)
