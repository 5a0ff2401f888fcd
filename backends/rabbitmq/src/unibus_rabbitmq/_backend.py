"""RabbitMQBackend: connections, and the producers, consumers and DLQs built on them."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from unibus.backend import BaseBackend
from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, ClosedError, ConfigError
from unibus.protocols import Consumer, DeadLetterQueue, Producer, StartAt
from unibus.topology import TopicSpec
from unibus_rabbitmq import _errors
from unibus_rabbitmq._capabilities import declare
from unibus_rabbitmq._consumer import RabbitMQConsumer
from unibus_rabbitmq._dead_letters import RabbitMQDeadLetterQueue
from unibus_rabbitmq._options import RabbitMQOptions
from unibus_rabbitmq._producer import Publisher, RabbitMQProducer
from unibus_rabbitmq._topology import Names, Topology

__all__ = ["RabbitMQBackend"]


class RabbitMQBackend(BaseBackend):
    """``amqp://user:pass@host:port/vhost`` (also ``amqps://``, and ``rabbitmq://`` meaning
    ``amqp://``). Options come from the query string and keyword arguments.

    Two robust connections (aio-pika ``connect_robust``), one for publishing and topology,
    one for consuming, so that flow control on publishers never stalls consumers. Both
    reconnect by themselves; consumers resume and producers wait for the connection.
    """

    name: ClassVar[str] = "rabbitmq"
    distribution: ClassVar[str] = "unibus-rabbitmq"
    Options: ClassVar[type[RabbitMQOptions]] = RabbitMQOptions

    options: RabbitMQOptions

    def __init__(self, url: str, options: Any) -> None:
        super().__init__(url, options)
        self._publishing: AbstractRobustConnection | None = None
        self._consuming: AbstractRobustConnection | None = None
        self._topology: Topology | None = None
        self._republisher: Publisher | None = None
        self._closed = False

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        return declare(options)

    @classmethod
    def variants(cls) -> list[tuple[str, Any]]:
        """Modes whose capabilities differ, for 'which backend could' answers."""
        return [
            ("rabbitmq", RabbitMQOptions()),
            ("rabbitmq (single_active_consumer=true)",
             RabbitMQOptions(single_active_consumer=True)),
            ("rabbitmq (queue_type=classic, max_priority=10)",
             RabbitMQOptions(queue_type="classic", max_priority=10)),
        ]

    # -- connections ------------------------------------------------------------------------

    def _amqp_url(self) -> str:
        parts = self.parts
        scheme = "amqp" if parts.scheme.lower() == "rabbitmq" else parts.scheme.lower()
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    @property
    def where(self) -> str:
        host = self.parts.hostname or "localhost"
        return f"{host}:{self.parts.port or (5671 if self.parts.scheme == 'amqps' else 5672)}"

    async def _connect_one(self, role: str) -> AbstractRobustConnection:
        o = self.options
        with _errors.connecting(self.where):
            return await aio_pika.connect_robust(
                self._amqp_url(),
                timeout=o.connect_timeout,
                reconnect_interval=o.reconnect_interval,
                heartbeat=o.heartbeat,
                client_properties={"connection_name": f"{o.client_id}:{role}"},
            )

    async def connect(self) -> None:
        if self._closed:
            raise ClosedError("the backend is closed")
        if self._publishing is not None:
            return
        publishing = await self._connect_one("publish")
        try:
            consuming = await self._connect_one("consume")
        except BaseException:
            await publishing.close()
            raise
        self._publishing, self._consuming = publishing, consuming
        self._topology = Topology(publishing, self.options)
        self._republisher = Publisher(publishing, self.options)

    def _ready(self) -> tuple[AbstractRobustConnection, AbstractRobustConnection, Topology,
                              Publisher]:
        if self._closed:
            raise ClosedError("the backend is closed")
        if (self._publishing is None or self._consuming is None or self._topology is None
                or self._republisher is None):
            raise ClosedError("the backend is not connected: call connect() first")
        return self._publishing, self._consuming, self._topology, self._republisher

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()

    async def _disconnect(self) -> None:
        if self._republisher is not None:
            await self._republisher.close()
        for connection in (self._consuming, self._publishing):
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), self.options.connect_timeout)

    # -- the Backend protocol ---------------------------------------------------------------

    def producer(self) -> Producer:
        publishing, _, topology, _ = self._ready()
        producer = RabbitMQProducer(Publisher(publishing, self.options), topology, self.options)
        return self.own(producer)  # type: ignore[no-any-return]

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        _, consuming, topology, republisher = self._ready()
        if not topics:
            raise ConfigError("subscribe to at least one topic")
        for topic in topics:
            Names.check("topic", topic)
        if group is not None:
            Names.check("group", group)
        if prefetch < 1 or prefetch > 65535:
            raise ConfigError("prefetch must be between 1 and 65535 (AMQP basic.qos)")
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if start not in (None, "latest"):
            self.require(False, f"start={start!r}", "replay")
        consumer = RabbitMQConsumer(
            topics, group, capabilities=self.capabilities, prefetch=prefetch,
            max_attempts=max_attempts, connection=consuming, topology=topology,
            republisher=republisher, options=self.options,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.close(drain_timeout=0)
            raise
        return self.own(consumer)  # type: ignore[no-any-return]

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        _, _, topology, republisher = self._ready()
        Names.check("topic", topic)
        if group is not None:
            Names.check("group", group)
        return RabbitMQDeadLetterQueue(topic, group, topology=topology, publisher=republisher)

    async def provision(self, spec: TopicSpec) -> None:
        """Exchange, and for each of ``spec.groups`` its queue and DLQ: messages published
        afterwards are kept for those groups even before any consumer runs."""
        _, _, topology, _ = self._ready()
        Names.check("topic", spec.name)
        for group in spec.groups:
            Names.check("group", group)
        # partitions: accepted as a parallelism hint and not mapped: a group is one queue
        # whose members compete, so adding consumers is how a group scales on RabbitMQ.
        if spec.retention is not None:
            self.require(False, f"retention={spec.retention:g}s", "retention")
        if spec.replication != 1 and self.options.queue_type != "quorum":
            raise CapabilityError(
                f"replication={spec.replication}",
                "classic queues are not replicated; use queue_type=quorum",
                backend=self.name,
            )
        if spec.options:
            raise ConfigError(
                f"unknown TopicSpec options for rabbitmq: {sorted(spec.options)}; "
                "queue settings are backend options (queue_type, max_length, ...)"
            )
        await topology.exchange(spec.name, create=True)
        if spec.dead_letter:
            await topology.dead_letters(spec.name, None)
        for group in spec.groups:
            await topology.group(spec.name, group, max_attempts=spec.max_attempts, create=True,
                                 replicas=spec.replication)

    async def delete_topic(self, topic: str) -> None:
        _, _, topology, _ = self._ready()
        await topology.delete_topic(Names.check("topic", topic))

    @property
    def declared_topics(self) -> dict[str, set[str]]:
        """Topics (and their queues) this backend declared; for tests and tooling."""
        return {} if self._topology is None else dict(self._topology.declared)
