"""Topology through the admin REST API: topics, partitions, retention, groups, DLQs, dedup."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from unibus.errors import CapabilityError
from unibus.topology import TopicSpec
from unibus_pulsar._admin import AdminClient

if TYPE_CHECKING:
    from unibus_pulsar._backend import PulsarBackend

__all__ = ["Topology"]

_SPEC_OPTIONS = {"deduplication"}


class Topology:
    """Creates what topics, groups and dead-letter queues need; idempotent throughout."""

    def __init__(self, backend: PulsarBackend, admin: AdminClient) -> None:
        self._backend = backend
        self.admin = admin
        self._known: set[str] = set()
        self._dead_letters: set[tuple[str, str | None]] = set()
        self._lock = asyncio.Lock()

    async def exists(self, topic: str) -> bool:
        """Whether ``topic`` exists (as a topic or a partitioned topic)."""
        if topic in self._known:
            return True
        full = self._backend.names.topic(topic)
        found = await self.admin.topics()
        if full in found or f"{full}-partition-0" in found:
            self._known.add(topic)
            return True
        return False

    async def ensure_dead_letter(self, topic: str, group: str | None) -> None:
        """The DLQ topic of (topic, group) and the subscription that keeps its messages.

        Without a subscription Pulsar does not retain a topic's messages, so the DLQ's own
        subscription exists before the first dead letter is written.
        """
        key = (topic, group)
        if key in self._dead_letters:
            return
        async with self._lock:
            if key in self._dead_letters:
                return
            dlq = self._backend.names.dead_letter_topic(topic, group)
            await self.admin.create_topic(dlq, 1)
            await self.admin.create_subscription(
                dlq, self._backend.options.dead_letter_subscription)
            self._dead_letters.add(key)

    async def provision(self, spec: TopicSpec) -> None:
        unknown = set(spec.options) - _SPEC_OPTIONS
        if unknown:
            raise CapabilityError(
                f"topic options {sorted(unknown)}",
                f"the Pulsar backend understands only {sorted(_SPEC_OPTIONS)} in "
                "TopicSpec.options",
                backend="pulsar",
            )
        self._backend.names.topic(spec.name)  # validates the name
        current = await self.admin.partitions(spec.name)
        if current and current != spec.partitions and spec.partitions > 1:
            if spec.partitions < current:
                raise CapabilityError(
                    f"partitions={spec.partitions}",
                    f"{spec.name} has {current} partitions; Pulsar can add partitions but "
                    "not remove them", backend="pulsar")
            await self.admin.update_partitions(spec.name, spec.partitions)
        await self.admin.create_topic(spec.name, spec.partitions)
        self._known.add(spec.name)
        if spec.retention is not None:
            await self.admin.set_retention(spec.name, spec.retention)
        if spec.replication > 1:
            await self.admin.set_persistence(spec.name, spec.replication)
        if "deduplication" in spec.options:
            await self.admin.set_deduplication(spec.name, bool(spec.options["deduplication"]))
        for group in spec.groups:
            await self.admin.create_subscription(spec.name, group)
            if spec.dead_letter:
                await self.ensure_dead_letter(spec.name, group)

    async def delete(self, topic: str) -> None:
        """The topic, its subscriptions, and its dead-letter and retry topics."""
        names = self._backend.names
        full = names.topic(topic)
        dlq_prefix = full + "-"
        for found in sorted(await self.admin.topics()):
            short = names.short(found)
            if found.startswith(dlq_prefix) and short.endswith(("-DLQ", "-RETRY")):
                await self.admin.delete_topic(short)
        await self.admin.delete_topic(topic)
        self._known.discard(topic)
        self._dead_letters = {k for k in self._dead_letters if k[0] != topic}
