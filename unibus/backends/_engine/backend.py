"""The backend class both built-ins share; they differ only in where the database lives."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from unibus.backend import BaseBackend
from unibus.backends._engine import log, queue
from unibus.backends._engine.capabilities import declare
from unibus.backends._engine.consumer import EmbeddedConsumer
from unibus.backends._engine.dead_letters import EmbeddedDeadLetterQueue
from unibus.backends._engine.options import EmbeddedOptions
from unibus.backends._engine.producer import EmbeddedProducer
from unibus.backends._engine.store import Store
from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, ClosedError, ConfigError, ConsumeError, TopologyError
from unibus.protocols import Consumer, DeadLetterQueue, Producer, StartAt
from unibus.topology import TopicSpec

__all__ = ["EmbeddedBackend"]


class EmbeddedBackend(BaseBackend):
    """A queue over an append-only log in SQLite (see docs/design/embedded-engine.md)."""

    Options: ClassVar[type[EmbeddedOptions]] = EmbeddedOptions
    #: Whether the database outlives the process.
    durable: ClassVar[bool] = True

    options: EmbeddedOptions

    def __init__(self, url: str, options: EmbeddedOptions) -> None:
        super().__init__(url, options)
        self._store: Store | None = None
        self._key, self._target = self.database()

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        return declare(options, durable=cls.durable)

    def database(self) -> tuple[str, str]:
        """(identity shared by backends of this process, sqlite3 connect target)."""
        raise NotImplementedError

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ClosedError("the backend is not connected")
        return self._store

    async def connect(self) -> None:
        if self._store is None:
            self._store = await Store.acquire(
                self._key, self._target, durable=self.durable,
                busy_timeout=self.options.busy_timeout, synchronous=self.options.synchronous,
            )

    async def _disconnect(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.release()

    def producer(self) -> Producer:
        producer: Producer = self.own(EmbeddedProducer(self.store, self.options, self.name))
        return producer

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        store = self.store
        names = tuple(dict.fromkeys(topics))
        grp = group if group is not None else f"~{uuid.uuid4().hex}"
        if start is None:
            start = "earliest" if group is not None else "latest"
        await store.call(ConsumeError, queue.join, names, grp, start, group is None,
                         self.options.auto_create, time.time())
        if max_attempts is None:
            limits = [await store.call(ConsumeError, log.topic_max_attempts, t) for t in names]
            known = [n for n in limits if n is not None]
            max_attempts = min(known) if known else None
        consumer = EmbeddedConsumer(
            store, names, group, grp, capabilities=self.capabilities, options=self.options,
            backend=self.name, prefetch=prefetch, max_attempts=max_attempts,
        )
        consumer.start()
        result: Consumer = self.own(consumer)
        return result

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        return EmbeddedDeadLetterQueue(self.store, topic, group)

    async def provision(self, spec: TopicSpec) -> None:
        if spec.replication > 1:
            raise CapabilityError(
                f"replication={spec.replication}",
                f"the {self.name} backend keeps one copy of each topic in one database",
                backend=self.name,
            )
        if spec.options:
            raise ConfigError(
                f"unknown topic options for {self.name}: {', '.join(sorted(spec.options))}"
            )
        await self.store.call(TopologyError, log.upsert_topic, spec.name, spec.retention,
                              spec.max_attempts, spec.groups, time.time())

    async def delete_topic(self, topic: str) -> None:
        await self.store.call(TopologyError, log.delete_topic, topic)
