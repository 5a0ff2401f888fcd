"""``sqs://[region]?endpoint_url=...``: the SQS backend (standard or FIFO queues, groups
through SNS fan-out or one queue per topic)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from unibus.backend import BaseBackend
from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, ClosedError, ConfigError, TopologyError
from unibus.options import BackendOptions
from unibus.protocols import Consumer, StartAt
from unibus.topology import TopicSpec
from unibus_sqs._capabilities import declare
from unibus_sqs._client import Clients
from unibus_sqs._consumer import Source, SQSConsumer
from unibus_sqs._dead_letters import SQSDeadLetterQueue
from unibus_sqs._errors import boundary
from unibus_sqs._options import SQSOptions
from unibus_sqs._producer import SQSProducer
from unibus_sqs._topology import Topology

__all__ = ["SQSBackend"]


class SQSBackend(BaseBackend):
    name: ClassVar[str] = "sqs"
    distribution: ClassVar[str] = "unibus-sqs"
    Options: ClassVar[type[BackendOptions]] = SQSOptions

    def __init__(self, url: str, options: BackendOptions) -> None:
        super().__init__(url, options)
        assert isinstance(options, SQSOptions)
        self.sqs_options = options
        self.clients = Clients(options)
        self.topology = Topology(self.clients, options)
        self._connected = False
        self._closed = False

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        return declare(options)

    @classmethod
    def url_options(cls, parts: urllib.parse.SplitResult) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if parts.scheme.lower() == "sqs+fifo":
            values["fifo"] = True
        if parts.hostname:
            values["region"] = parts.hostname
        if parts.path not in ("", "/"):
            raise ConfigError(f"SQS URLs have no path: sqs://[region]?options, got {parts.path!r}")
        return values

    @classmethod
    def variants(cls) -> Iterator[tuple[str, Any]]:
        """The modes offered, for 'installed backends that can' in refusals."""
        yield "sqs (standard, SNS groups)", SQSOptions(groups="sns")
        yield "sqs (standard, one queue per topic)", SQSOptions(groups="queue")
        yield "sqs+fifo", SQSOptions(fifo=True, groups="sns")

    async def connect(self) -> None:
        if self._closed:
            raise ClosedError("the backend is closed")
        if self._connected:
            return
        await self.clients.open()
        try:
            with boundary("connecting to SQS", default=TopologyError):
                await self.clients.sqs.list_queues(MaxResults=1)
        except BaseException:
            await self.clients.close()
            raise
        self._connected = True

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the backend is closed")
        if not self._connected:
            raise ClosedError("the backend is not connected; await bus.open() first")

    def producer(self) -> SQSProducer:
        self._check_open()
        return self.own(SQSProducer(self.topology, self.capabilities))  # type: ignore[no-any-return]

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        self._check_open()
        if start not in (None, "latest"):
            self.require(False, f"start={start!r}", "replay")
        if group is None and not self.capabilities.fan_out:
            self.require(False, "an ungrouped (private) consumer", "fan_out")
        names = self.topology.names
        sources = []
        for topic in topics:
            if self.topology.sns_mode:
                private = group is None
                queue = names.private_queue(topic) if group is None \
                    else names.group_queue(topic, group)
            else:
                private, queue = False, names.topic_queue(topic)
            sources.append(Source(topic, group, queue, private))
        consumer = SQSConsumer(self.topology, sources, group, capabilities=self.capabilities,
                               prefetch=prefetch, max_attempts=max_attempts)
        await consumer.start()
        self.own(consumer)
        return consumer  # type: ignore[return-value]  # list[BaseDelivery] is invariant

    def dead_letter_queue(self, topic: str, group: str | None = None) -> SQSDeadLetterQueue:
        self._check_open()
        self.topology.names.check(topic)
        return SQSDeadLetterQueue(self.topology, topic, group)

    async def provision(self, spec: TopicSpec) -> None:
        self._check_open()
        t = self.topology
        t.check_spec_options(spec.options)
        if spec.partitions != 1:
            raise CapabilityError(f"partitions={spec.partitions}",
                                  "SQS queues have no partitions; FIFO mode orders per key",
                                  backend=self.name)
        attrs = t.attributes()
        if spec.retention is not None:
            if not 60 <= spec.retention <= 1209600:
                raise CapabilityError(f"retention={spec.retention:g}s",
                                      "SQS keeps messages between 1 minute and 14 days",
                                      backend=self.name)
            attrs["MessageRetentionPeriod"] = str(int(spec.retention))
        if t.sns_mode:
            arn = await t.topic_arn(spec.name, create=True)
            for group in spec.groups:
                url = await t.queue_url(t.names.group_queue(spec.name, group), create=True,
                                        topic=spec.name, attributes=attrs)
                await self._dead_letter_for(spec, url, group)
                await t.subscribe(arn, url)
            if spec.dead_letter:
                await t.dead_letter_url(spec.name, None, create=True)
            return
        if len(spec.groups) > 1:
            self.require(False, f"groups={list(spec.groups)}", "fan_out")
        url = await t.queue_url(t.names.topic_queue(spec.name), create=True, topic=spec.name,
                                attributes=attrs)
        await self._dead_letter_for(spec, url, None)
        for group in spec.groups:
            await t.bind_group(url, spec.name, group)

    async def _dead_letter_for(self, spec: TopicSpec, url: str, group: str | None) -> None:
        if not spec.dead_letter:
            return
        dlq = await self.topology.dead_letter_url(spec.name, group, create=True)
        await self.topology.redrive(url, dlq, spec.max_attempts)

    async def delete_topic(self, topic: str) -> None:
        """Close this backend's consumers of ``topic`` (they would build its queues again),
        then delete its queues, DLQs, SNS topic and subscriptions."""
        self._check_open()
        for resource in list(self._owned):
            if isinstance(resource, SQSConsumer) and topic in resource.topics:
                await resource.close()
                self._owned.remove(resource)
        await self.topology.delete_topic(topic)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()

    async def _disconnect(self) -> None:
        await self.clients.close()
        self._connected = False
