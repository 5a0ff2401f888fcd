"""Topics on the broker: names of the DLQ and retry topics, creation, deletion."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections.abc import Iterable
from typing import Any

import aiokafka.errors as ke  # type: ignore[import-untyped]
from aiokafka.admin import (  # type: ignore[import-untyped]
    AIOKafkaAdminClient,
    NewPartitions,
    NewTopic,
)
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
    ConfigResource,
    ConfigResourceType,
)

from unibus.errors import TopicNotFoundError, TopologyError
from unibus.topology import TopicSpec
from unibus_kafka import _errors
from unibus_kafka._options import KafkaOptions

__all__ = ["Topology", "dlq_topic", "retry_topic", "tier_label"]

log = logging.getLogger("unibus.kafka")

_LEGAL = re.compile(r"[^a-zA-Z0-9._-]")
_MAX_NAME = 249


def _safe(part: str) -> str:
    clean = _LEGAL.sub("_", part)
    if clean != part or len(clean) > 80:
        clean = f"{clean[:60]}-{hashlib.sha1(part.encode()).hexdigest()[:10]}"
    return clean


def dlq_topic(topic: str) -> str:
    """The emulated dead-letter queue of ``topic``."""
    return f"{topic}.dlq"[:_MAX_NAME]


def tier_label(delay: float) -> str:
    return f"{delay:g}s".replace(".", "_")


def retry_topic(topic: str, group: str, delay: float) -> str:
    """Where ``group`` parks nacked messages of ``topic`` for about ``delay`` seconds."""
    name = f"{topic}.retry.{_safe(group)}.{tier_label(delay)}"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:16]
        name = f"{topic[:200]}.retry.{digest}"
    return name


class Topology:
    """The admin client, and which topics are known to exist (so publishes stay cheap)."""

    def __init__(self, admin: AIOKafkaAdminClient, options: KafkaOptions) -> None:
        self.admin = admin
        self.options = options
        self._known: set[str] = set()
        self._lock = asyncio.Lock()

    async def exists(self, topic: str) -> bool:
        if topic in self._known:
            return True
        with _errors.topology("list topics"):
            present = set(await self.admin.list_topics())
        self._known |= present
        return topic in present

    async def require(self, topics: Iterable[str], *, partitions: int | None = None,
                      configs: dict[str, str] | None = None) -> None:
        """Make sure ``topics`` exist: create them when ``auto_create``, else refuse."""
        missing = [t for t in topics if t not in self._known]
        if not missing:
            return
        async with self._lock:
            with _errors.topology("list topics"):
                self._known |= set(await self.admin.list_topics())
            missing = [t for t in missing if t not in self._known]
            if not missing:
                return
            if not self.options.auto_create:
                raise TopicNotFoundError(
                    f"topic {missing[0]!r} does not exist on Kafka; provision it "
                    "(bus.provision / unibus topology apply) or connect with auto_create=true"
                )
            await self._create(
                [NewTopic(t, partitions or self.options.partitions, self.options.replication,
                          topic_configs=configs or {}) for t in missing]
            )

    async def _create(self, new_topics: list[Any]) -> None:
        with _errors.topology(f"create topics {[t.name for t in new_topics]}"):
            response = await self.admin.create_topics(new_topics)
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            if code and code != ke.TopicAlreadyExistsError.errno:
                error = ke.for_code(code)
                detail = entry[2] if len(entry) > 2 and entry[2] else error.__name__
                raise TopologyError(f"cannot create Kafka topic {name!r}: {detail}")
            self._known.add(name)
        await self._wait_visible([t.name for t in new_topics])

    async def _wait_visible(self, names: list[str]) -> None:
        """Topic creation is asynchronous in KRaft: wait until metadata shows leaders."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.request_timeout_ms / 1000
        while True:
            with _errors.topology("describe topics"):
                described = await self.admin.describe_topics(names)
            ready = all(
                t["error_code"] == 0 and t["partitions"]
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            )
            if ready or loop.time() > deadline:
                return
            await asyncio.sleep(0.05)  # poll the controller's metadata

    async def partitions(self, topic: str) -> list[int]:
        with _errors.topology(f"describe topic {topic!r}"):
            [described] = await self.admin.describe_topics([topic])
        if described["error_code"]:
            raise TopicNotFoundError(f"topic {topic!r} does not exist on Kafka")
        return sorted(p["partition"] for p in described["partitions"])

    async def provision(self, spec: TopicSpec, tiers: Iterable[float]) -> None:
        configs = _configs(spec)
        await self._apply(spec.name, spec.partitions, spec.replication, configs)
        if spec.dead_letter:
            await self._apply(dlq_topic(spec.name), 1, spec.replication, configs)
        for group in spec.groups:
            for delay in tiers:
                await self._apply(retry_topic(spec.name, group, delay), spec.partitions,
                                  spec.replication, {})

    async def _apply(self, name: str, partitions: int, replication: int,
                     configs: dict[str, str]) -> None:
        if not await self.exists(name):
            await self._create([NewTopic(name, partitions, replication, topic_configs=configs)])
            return
        current = await self.partitions(name)
        if len(current) < partitions:
            with _errors.topology(f"add partitions to {name!r}"):
                await self.admin.create_partitions({name: NewPartitions(partitions)})
        elif len(current) > partitions:
            raise TopologyError(
                f"topic {name!r} has {len(current)} partitions and Kafka cannot reduce them "
                f"to {partitions}; create a new topic"
            )
        if configs:
            with _errors.topology(f"alter configs of {name!r}"):
                await self.admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name, configs)]
                )

    async def delete(self, topic: str) -> None:
        """Delete ``topic``, its DLQ and its retry topics. Idempotent."""
        with _errors.topology("list topics"):
            present = await self.admin.list_topics()
        doomed = [t for t in present
                  if t in (topic, dlq_topic(topic)) or t.startswith(f"{topic}.retry.")]
        self._known.difference_update([*doomed, topic, dlq_topic(topic)])
        if not doomed:
            return
        with _errors.topology(f"delete topics {doomed}"):
            response = await self.admin.delete_topics(doomed)
        for entry in response.topic_error_codes:
            code = entry[1]
            if code and code != ke.UnknownTopicOrPartitionError.errno:
                raise TopologyError(f"cannot delete Kafka topic {entry[0]!r}: "
                                    f"{ke.for_code(code).__name__}")
        await self._wait_gone(doomed)

    async def _wait_gone(self, names: list[str]) -> None:
        """Deletion is asynchronous too: a topic re-created before the controller finished
        deleting it would vanish afterwards. Wait until no listing shows them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.request_timeout_ms / 1000
        while loop.time() < deadline:
            with _errors.topology("list topics"):
                present = set(await self.admin.list_topics())
            if not present.intersection(names):
                return
            await asyncio.sleep(0.05)  # poll the controller's metadata

    def forget(self, topic: str) -> None:
        self._known.discard(topic)


def _configs(spec: TopicSpec) -> dict[str, str]:
    configs = {k: str(v).lower() if isinstance(v, bool) else str(v)
               for k, v in spec.options.items()}
    if spec.retention is not None:
        configs["retention.ms"] = (
            "-1" if math.isinf(spec.retention) else str(int(spec.retention * 1000))
        )
    return configs
