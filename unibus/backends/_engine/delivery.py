"""A delivery of the embedded engine: the stored row, decoded into a Message on first use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from unibus.base import BaseDelivery
from unibus.message import Message
from unibus.positions import Position

if TYPE_CHECKING:
    from unibus.backends._engine.consumer import EmbeddedConsumer

__all__ = ["EmbeddedDelivery"]

# BaseDelivery's own storage for the attributes computed on first use.
_MESSAGE: Any = vars(BaseDelivery)["message"]
_POSITION: Any = vars(BaseDelivery)["position"]


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
        _MESSAGE.__set__(self, None)
        _POSITION.__set__(self, None)
        self.topic = topic
        self.group = consumer.group
        self.attempt = attempt
        self.raw = (seq, token)
        self._stored: tuple[str | None, str, bytes] | None = (key, headers, body)

    @property
    def message(self) -> Message:
        message: Message | None = _MESSAGE.__get__(self)
        if message is None:
            key, headers, body = self._stored  # type: ignore[misc]
            message = Message.from_wire(body, json.loads(headers), key=key)
            _MESSAGE.__set__(self, message)
            self._stored = None
        return message

    @message.setter
    def message(self, value: Message) -> None:
        _MESSAGE.__set__(self, value)

    @property
    def position(self) -> Position:
        position: Position | None = _POSITION.__get__(self)
        if position is None:
            position = Position(self.topic, self.raw[0], 0)
            _POSITION.__set__(self, position)
        return position

    @position.setter
    def position(self, value: Position | None) -> None:
        _POSITION.__set__(self, value)
