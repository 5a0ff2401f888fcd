"""A Pulsar delivery: the client's message, decoded into a unibus Message on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unibus.base import BaseDelivery
from unibus.message import Message
from unibus.positions import Position
from unibus_pulsar._names import encode_position

if TYPE_CHECKING:
    import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]

    from unibus_pulsar._consumer import PulsarConsumer

__all__ = ["ATTEMPTS", "ORIGIN", "TOPIC", "PulsarDelivery"]

# Properties of retry copies (see PulsarConsumer); never shown as user headers.
ATTEMPTS = "unibus-pulsar-attempts"
ORIGIN = "unibus-pulsar-position"
TOPIC = "unibus-pulsar-topic"

# BaseDelivery's own storage for the two attributes PulsarDelivery computes on first use.
_MESSAGE: Any = vars(BaseDelivery)["message"]
_POSITION: Any = vars(BaseDelivery)["position"]


class PulsarDelivery(BaseDelivery):
    """A delivery that keeps the client's message and builds ``message`` (and ``position``)
    when first read: handing a message out costs no envelope decoding, and a consumer that
    only settles never pays for it. ``raw`` is ``(client consumer, client message)``."""

    __slots__ = ("_properties",)

    def __init__(self, consumer: PulsarConsumer, pc: pulsar_asyncio.Consumer, msg: Any, *,
                 topic: str, attempt: int, properties: dict[str, str] | None = None,
                 position: Position | None = None) -> None:
        super().__init__(consumer, None, topic=topic, attempt=attempt,  # type: ignore[arg-type]
                         position=position, raw=(pc, msg))
        self._properties = properties

    @property
    def message(self) -> Message:
        message: Message | None = _MESSAGE.__get__(self)
        if message is None:
            msg = self.raw[1]
            properties = self._properties
            if properties is None:  # not read yet
                properties = msg.properties()
                for name in (ATTEMPTS, ORIGIN, TOPIC):
                    properties.pop(name, None)
            message = Message.from_wire(msg.data(), properties,
                                        key=msg.partition_key() or None)
            _MESSAGE.__set__(self, message)
        return message

    @message.setter
    def message(self, value: Message) -> None:
        _MESSAGE.__set__(self, value)

    @property
    def position(self) -> Position:
        position: Position | None = _POSITION.__get__(self)
        if position is None:
            position = encode_position(self.topic, self.raw[1].message_id())
            _POSITION.__set__(self, position)
        return position

    @position.setter
    def position(self, value: Position | None) -> None:
        _POSITION.__set__(self, value)
