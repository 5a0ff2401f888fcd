"""Exactly-once consume-transform-produce: Kafka transactions carrying the group's offsets.

A consumer made with ``exactly_once=true`` owns one transactional producer. Inside
``consumer.transaction()`` the records published and the offsets of the deliveries acked
are committed in one Kafka transaction (``send_offsets_to_transaction``), so read_committed
readers see the output exactly when the input counts as consumed. Plain acks of such a
consumer commit their offsets through (offset-only) transactions as well, under the same
lock, so an older offset can never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from unibus.base import BaseDelivery, check_size
from unibus.errors import SettlementError
from unibus.message import Message, Receipt
from unibus_kafka import _errors
from unibus_kafka._producer import KafkaProducer

if TYPE_CHECKING:
    from unibus_kafka._consumer import KafkaConsumer

__all__ = ["KafkaTransaction", "Transactions"]

log = logging.getLogger("unibus.kafka")


class KafkaTransaction:
    """One open transaction: publish records, acknowledge deliveries."""

    def __init__(self, consumer: KafkaConsumer, producer: KafkaProducer) -> None:
        self._consumer = consumer
        self._producer = producer
        self._acks: list[BaseDelivery] = []

    async def publish(self, topic: str, message: Message) -> Receipt:
        """Write ``message`` inside the transaction (invisible to read_committed readers
        until the transaction commits)."""
        backend = self._consumer._backend
        check_size(message, backend.options.max_message_size, "kafka")
        await backend.topology.require([topic])
        future = await self._producer.send(topic, message)
        with _errors.publishing(topic):
            meta = await future
        return Receipt(topic=topic, message_id=message.id, partition=meta.partition,
                       offset=meta.offset)

    async def ack(self, delivery: BaseDelivery) -> None:
        """Commit ``delivery``'s offset with the transaction."""
        if delivery._consumer is not self._consumer:
            raise SettlementError("a transaction acknowledges its own consumer's deliveries")
        if delivery.settled or delivery in self._acks:
            raise SettlementError(f"message {delivery.message.id} was already settled")
        self._acks.append(delivery)

    def offsets(self) -> dict[Any, tuple[int, str]]:
        """Offsets to commit; SettlementError unless each partition's deliveries are
        settled in order (otherwise a crash could repeat output already committed)."""
        consumer = self._consumer
        by_tp: dict[Any, set[int]] = {}
        for delivery in self._acks:
            if consumer._current(delivery) is None:
                raise SettlementError(
                    f"partition of {delivery.message.id} was revoked; the transaction is "
                    "aborted and the record will be delivered again"
                )
            by_tp.setdefault(delivery.raw.tp, set()).add(delivery.raw.offset)
        out: dict[Any, tuple[int, str]] = {}
        for tp, offsets in by_tp.items():
            commit = consumer._offsets[tp].commit_offset_with(offsets)
            if commit <= max(offsets):
                raise SettlementError(
                    f"exactly-once needs each partition's deliveries settled in order: an "
                    f"earlier delivery of {tp.topic}[{tp.partition}] is still unsettled"
                )
            out[tp] = (commit, "")
        return out

    def settle(self) -> None:
        consumer = self._consumer
        for delivery in self._acks:
            delivery._settled = True
            consumer._settled(delivery)
            consumer._in_flight.discard(delivery)
        if not consumer._in_flight:
            consumer._drained.set()


class Transactions:
    """The transactional producer of one consumer and the lock its transactions share."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer
        backend = consumer._backend
        self.lock = asyncio.Lock()
        self._producer = KafkaProducer(
            backend,
            transactional_id=consumer.transactional_id(),
            transaction_timeout_ms=backend.options.transaction_timeout_ms,
            enable_idempotence=True,
            acks="all",
        )

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[KafkaTransaction]:
        async with self.lock:
            client = await self._producer.client()
            with _errors.publishing("begin a transaction"):
                await client.begin_transaction()
            tx = KafkaTransaction(self._consumer, self._producer)
            try:
                yield tx
                offsets = tx.offsets()
                with _errors.publishing("commit the transaction"):
                    if offsets:
                        await client.send_offsets_to_transaction(offsets, self._consumer.group)
                    await client.commit_transaction()
            except BaseException:
                with contextlib.suppress(Exception):
                    await client.abort_transaction()
                raise
            tx.settle()
            for tp, (offset, _meta) in offsets.items():
                if tp in self._consumer._offsets:
                    self._consumer._offsets[tp].committed = offset

    async def commit_offsets(self, offsets: dict[Any, tuple[int, str]]) -> None:
        """Commit offsets of plain acks in an offset-only transaction (hold ``lock``)."""
        client = await self._producer.client()
        try:
            with _errors.settling("commit offsets in a transaction"):
                await client.begin_transaction()
                await client.send_offsets_to_transaction(offsets, self._consumer.group)
                await client.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await client.abort_transaction()
            raise

    async def close(self) -> None:
        await self._producer.close()
