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

_RAW: Any = BaseDelivery.__dict__["raw"]  # the slot's member descriptor

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
        BaseDelivery.__init__(self, consumer, message, topic, attempt, position)
        self._record = record
        self._part = part
        self._offset = offset

    def _record_ref(self) -> RecordRef:
        ref: RecordRef | None = _RAW.__get__(self)
        if ref is None:
            part = self._part
            ref = RecordRef(part.tp, self._offset, part.epoch)
            _RAW.__set__(self, ref)
        return ref

    # BaseDelivery's ``raw`` slot, read through a property that builds the RecordRef on
    # first read; its setter is the slot's own (C) setter, which BaseDelivery.__init__
    # calls with None.
    raw = property(_record_ref, _RAW.__set__)

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
