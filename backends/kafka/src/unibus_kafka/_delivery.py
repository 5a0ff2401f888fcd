"""A Kafka delivery: its record, where it came from, and its message decoded on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from unibus.base import BaseConsumer, BaseDelivery
from unibus.message import Message
from unibus.positions import Position
from unibus_kafka._codec import decode, record_headers

if TYPE_CHECKING:
    from unibus_kafka._offsets import PartitionOffsets

__all__ = ["KafkaDelivery", "RecordRef"]

class RecordRef(NamedTuple):
    """Where a delivery came from; ``epoch`` goes stale when its partition is revoked or
    sought, and a stale delivery's settlement changes nothing (the record comes again)."""

    tp: Any
    offset: int
    epoch: int


class KafkaDelivery(BaseDelivery):
    """A delivery that keeps its consumer record and decodes it when ``message`` is first
    read: handing a record out costs no header parsing, and a consumer that settles by
    position alone never pays for the envelope.

    It refers to its partition's :class:`PartitionOffsets` (``_part``, shared by every
    delivery of that partition and assignment) and its record's offset; ``raw``, the
    :class:`RecordRef`, is built from them when read.
    """

    __slots__ = ("_offset", "_part", "_record")

    def __init__(self, consumer: BaseConsumer, record: Any, topic: str, attempt: int,
                 part: PartitionOffsets, offset: int, message: Message | None = None,
                 position: Position | None = None) -> None:
        # BaseDelivery.__init__ inlined (raw excepted): this runs once per record.
        self._consumer = consumer
        self._settled = False
        self._message = message
        self.topic = topic
        self.group = consumer.group
        self.attempt = attempt
        self._position = position
        self._record = record
        self._part = part
        self._offset = offset

    @property
    def raw(self) -> RecordRef:
        part = self._part
        return RecordRef(part.tp, self._offset, part.epoch)

    def again(self) -> KafkaDelivery:
        """The same record delivered once more (a redelivery from memory)."""
        return KafkaDelivery(self._consumer, self._record, self.topic, self.attempt + 1,
                             self._part, self._offset, self.message, self.position)

    def _decode(self) -> Message:
        record = self._record
        message = decode(record, record_headers(record))
        self._record = None  # its headers now live in the message
        return message

    def _locate(self) -> Position:
        tp = self._part.tp
        return Position(tp.topic, self._offset, tp.partition)
