"""The Kafka backend: one admin connection, producers, consumers and DLQs on top of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from unibus.backend import BaseBackend
from unibus.capabilities import Capabilities
from unibus.errors import ClosedError
from unibus.options import BackendOptions
from unibus.protocols import Consumer, StartAt
from unibus.topology import TopicSpec
from unibus_kafka import _errors
from unibus_kafka._capabilities import declare
from unibus_kafka._client import bootstrap_servers, connection_settings
from unibus_kafka._consumer import KafkaConsumer
from unibus_kafka._dead_letters import KafkaDeadLetterQueue
from unibus_kafka._options import KafkaOptions
from unibus_kafka._producer import KafkaProducer
from unibus_kafka._topology import Topology

__all__ = ["KafkaBackend"]


class KafkaBackend(BaseBackend):
    """``kafka://host:9092[,host:9092]`` (``kafka+ssl://`` for TLS); see docs/backends/kafka.md.

    Topic -> Kafka topic, key -> record key (per-partition order), group -> Kafka consumer
    group, fan-out -> several groups (an ungrouped consumer reads every partition itself).
    """

    name: ClassVar[str] = "kafka"
    distribution: ClassVar[str] = "unibus-kafka"
    Options: ClassVar[type[BackendOptions]] = KafkaOptions

    def __init__(self, url: str, options: BackendOptions) -> None:
        super().__init__(url, options)
        assert isinstance(options, KafkaOptions)
        self.options: KafkaOptions = options
        self.connection = connection_settings(self.parts, options)
        self.where = ",".join(bootstrap_servers(self.parts))
        self._topology: Topology | None = None
        self._internal: KafkaProducer | None = None
        self._closed = False

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        return declare(options)

    @classmethod
    def variants(cls) -> list[tuple[str, KafkaOptions]]:
        """Modes whose capabilities differ, for 'installed backends that can' in refusals."""
        return [("kafka", KafkaOptions()),
                ("kafka (exactly_once=true)", KafkaOptions(exactly_once=True))]

    @property
    def topology(self) -> Topology:
        if self._closed:
            raise ClosedError("the Kafka backend is closed")
        if self._topology is None:
            raise ClosedError("the Kafka backend is not connected")
        return self._topology

    async def connect(self) -> None:
        if self._topology is not None:
            return
        admin = AIOKafkaAdminClient(**self.connection)
        try:
            with _errors.connecting(self.where):
                await asyncio.wait_for(admin.start(), self.options.connect_timeout)
        except BaseException:
            await _quietly(admin.close())
            raise
        self._topology = Topology(admin, self.options)

    def producer(self) -> KafkaProducer:
        self.topology  # noqa: B018 - refuses use before connect / after close
        producer = KafkaProducer(self)
        self.own(producer)
        return producer

    def internal_producer(self) -> KafkaProducer:
        """The producer retries, dead letters and DLQ replays go through."""
        if self._internal is None:
            self._internal = KafkaProducer(self)
        return self._internal

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        self.topology  # noqa: B018
        consumer = KafkaConsumer(self, topics, group, start=start, prefetch=prefetch,
                                 max_attempts=max_attempts)
        try:
            await consumer.open()
        except BaseException:
            await _quietly(consumer.close(drain_timeout=0))
            raise
        self.own(consumer)
        return cast(Consumer, consumer)

    def dead_letter_queue(self, topic: str, group: str | None = None) -> KafkaDeadLetterQueue:
        self.topology  # noqa: B018
        return KafkaDeadLetterQueue(self, topic, group)

    async def provision(self, spec: TopicSpec) -> None:
        await self.topology.provision(spec, self.options.retry_tiers)

    async def delete_topic(self, topic: str) -> None:
        await self.topology.delete(topic)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await super().close()
        finally:
            self._closed = True

    async def _disconnect(self) -> None:
        if self._internal is not None:
            await self._internal.close()
        if self._topology is not None:
            await _quietly(self._topology.admin.close())


async def _quietly(closing: Any) -> None:
    """Best effort while already failing or closing."""
    with contextlib.suppress(Exception):
        await closing
