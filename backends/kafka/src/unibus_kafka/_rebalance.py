"""The rebalance listener: drain and commit before partitions are revoked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from unibus_kafka._consumer import KafkaConsumer

__all__ = ["RebalanceListener"]


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before revocation: stop handing out the partitions' records, wait (bounded by
    ``rebalance_drain_timeout``) for their in-flight deliveries to settle, commit the settled
    prefix. After assignment: position each partition (committed offset, or the consumer's
    ``start`` for a new group) and read the delivery marks the previous owner left."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._consumer._revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._consumer._assign(set(assigned))
