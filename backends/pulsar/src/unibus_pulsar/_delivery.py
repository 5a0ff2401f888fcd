"""A Pulsar delivery: the client's message, decoded into a unibus Message on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unibus.base import BaseDelivery
from unibus.message import Message
from unibus.positions import Position
from unibus_pulsar._names import encode_position

if TYPE_CHECKING:
    from unibus_pulsar._consumer import PulsarConsumer

__all__ = ["ATTEMPTS", "ORIGIN", "TOPIC", "PulsarDelivery"]

# Properties of retry copies (see PulsarConsumer); never shown as user headers.
ATTEMPTS = "unibus-pulsar-attempts"
ORIGIN = "unibus-pulsar-position"
TOPIC = "unibus-pulsar-topic"


class PulsarDelivery(BaseDelivery):
    """A delivery that keeps the client's message and builds ``message`` (and ``position``)
    when first read: handing a message out costs no envelope decoding, and a consumer that
    only settles never pays for it. ``raw`` is ``(client consumer, client message)``."""

    __slots__ = ("_properties",)

    def __init__(self, consumer: PulsarConsumer, raw: tuple[Any, Any],
                 topic: str, attempt: int, properties: dict[str, str] | None = None,
                 position: Position | None = None) -> None:
        # BaseDelivery's fields set here rather than through its keyword __init__: this runs
        # once per message, and the call costs more than the rest of the delivery (a unit
        # test checks that every slot of BaseDelivery is set).
        self._consumer = consumer
        self._settled = False
        self._message = None
        self._position = position
        self.topic = topic
        self.group = consumer.group
        self.attempt = attempt
        self.raw = raw
        self._properties = properties

    def _decode(self) -> Message:
        msg = self.raw[1]
        properties = self._properties
        if properties is None:  # not read yet
            properties = msg.properties()
            for name in (ATTEMPTS, ORIGIN, TOPIC):
                properties.pop(name, None)
        return Message.from_wire(msg.data(), properties, key=msg.partition_key() or None)

    def _locate(self) -> Position:
        return encode_position(self.topic, self.raw[1].message_id())
