"""A Kafka delivery: its record, where it came from, and its message decoded on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from unibus.base import BaseDelivery
from unibus.message import Message
from unibus.positions import Position
from unibus_kafka._codec import decode, record_headers

if TYPE_CHECKING:
    from unibus_kafka._consumer import KafkaConsumer

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
    position alone never pays for the envelope."""

    __slots__ = ("_record",)

    def __init__(self, consumer: KafkaConsumer, record: Any, topic: str, attempt: int,
                 raw: RecordRef, *, message: Message | None = None,
                 position: Position | None = None) -> None:
        super().__init__(consumer, message, topic=topic, attempt=attempt,
                         position=position, raw=raw)
        self._record = record

    def _decode(self) -> Message:
        record = self._record
        message = decode(record, record_headers(record))
        self._record = None  # its headers now live in the message
        return message

    def _locate(self) -> Position:
        ref: RecordRef = self.raw
        return Position(ref.tp.topic, ref.offset, ref.tp.partition)
