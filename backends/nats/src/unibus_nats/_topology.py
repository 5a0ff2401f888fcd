"""Streams and consumers: created on first use (or by provision), idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext, api

from unibus.errors import CapabilityError, ConfigError, TopicNotFoundError, TopologyError
from unibus.positions import Position
from unibus.protocols import StartAt
from unibus.topology import TopicSpec
from unibus_nats import _names
from unibus_nats._errors import boundary
from unibus_nats._options import NATSOptions

__all__ = ["Topology", "deliver_policy"]

log = logging.getLogger("unibus.nats")

_STREAM_OPTIONS = {"max_msgs", "max_bytes", "discard", "storage", "max_msgs_per_subject"}


def deliver_policy(topic: str, start: StartAt | None, grouped: bool) -> dict[str, Any]:
    """ConsumerConfig fields starting a consumer at ``start`` (None: the natural start,
    everything kept for a group, only new messages for a private subscription)."""
    if start is None:
        start = "earliest" if grouped else "latest"
    if start == "earliest":
        return {"deliver_policy": api.DeliverPolicy.ALL}
    if start == "latest":
        return {"deliver_policy": api.DeliverPolicy.NEW}
    if isinstance(start, Position):
        if start.topic != topic or not isinstance(start.offset, int) or start.offset < 1:
            raise ConfigError(f"{start!r} is not a position in topic {topic!r}")
        return {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": start.offset}
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise ConfigError("start/seek times must be timezone-aware")
        return {"deliver_policy": api.DeliverPolicy.BY_START_TIME, "opt_start_time": start}
    raise ConfigError(f"cannot start at {start!r}: use 'earliest', 'latest', a Position "
                      "or a datetime")


class Topology:
    """Knows which streams exist; creates streams, DLQ streams and consumers."""

    def __init__(self, js: JetStreamContext, options: NATSOptions, backend: str) -> None:
        self.js = js
        self.options = options
        self.backend = backend
        self._known: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- streams ----------------------------------------------------------------------------

    def stream_config(self, topic: str, spec: TopicSpec | None = None) -> api.StreamConfig:
        o = self.options
        max_age = spec.retention if spec is not None and spec.retention else o.max_age
        window = o.duplicate_window if max_age is None else min(o.duplicate_window, max_age)
        extra: dict[str, Any] = {}
        if spec is not None:
            unknown = set(spec.options) - _STREAM_OPTIONS
            if unknown:
                raise ConfigError(f"unknown NATS stream options {sorted(unknown)}; "
                                  f"known: {sorted(_STREAM_OPTIONS)}")
            extra = dict(spec.options)
        storage = extra.pop("storage", o.storage)
        return api.StreamConfig(
            name=_names.stream_name(topic),
            subjects=[_names.subject(topic)],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType(storage),
            num_replicas=max(o.replicas, spec.replication if spec is not None else 1),
            max_age=max_age,
            duplicate_window=window,
            discard=api.DiscardPolicy(extra.pop("discard", "old")),
            **extra,
        )

    def dlq_config(self, topic: str) -> api.StreamConfig:
        return api.StreamConfig(
            name=_names.dlq_stream(topic),
            subjects=_names.dlq_subjects(topic),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType(self.options.storage),
            num_replicas=self.options.replicas,
            duplicate_window=self.options.duplicate_window,
        )

    async def ensure(self, topic: str, *, create: bool | None = None) -> str:
        """The stream of ``topic``, created when allowed; TopicNotFoundError otherwise."""
        name = _names.stream_name(topic)
        if name in self._known:
            return name
        config = self.stream_config(topic)
        allowed = self.options.auto_create if create is None else create
        await self._ensure_stream(name, config, topic, allowed)
        return name

    async def ensure_dlq(self, topic: str) -> str:
        name = _names.dlq_stream(topic)
        if name not in self._known:
            await self._ensure_stream(name, self.dlq_config(topic), topic, True)
        return name

    async def dlq_exists(self, topic: str) -> bool:
        name = _names.dlq_stream(topic)
        if name in self._known:
            return True
        with boundary("topology", f"looking up stream {name}"):
            try:
                await self.js.stream_info(name)
            except nats.js.errors.NotFoundError:
                return False
        self._known.add(name)
        return True

    async def _ensure_stream(
        self, name: str, config: api.StreamConfig, topic: str, create: bool
    ) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._known:
                return
            with boundary("topology", f"stream {name} of topic {topic!r}"):
                try:
                    await self.js.stream_info(name)
                except nats.js.errors.NotFoundError:
                    if not create:
                        raise TopicNotFoundError(
                            f"topic {topic!r} does not exist (no JetStream stream {name}); "
                            "provision it or connect with auto_create=true"
                        ) from None
                    await self.js.add_stream(config)
            self._known.add(name)

    def forget(self, topic: str) -> None:
        """The stream may have gone (deleted elsewhere): look it up again next time."""
        self._known.discard(_names.stream_name(topic))

    async def provision(self, spec: TopicSpec) -> None:
        if spec.partitions > 1:
            raise CapabilityError(
                f"partitions={spec.partitions}",
                "a JetStream stream is one ordered log; unibus does not partition topics "
                "by subject (use one topic per partition, or kafka)", backend=self.backend)
        config = self.stream_config(spec.name, spec)
        name = config.name or ""
        with boundary("topology", f"provisioning {spec.name!r}"):
            try:
                await self.js.stream_info(name)
                await self.js.update_stream(config)
            except nats.js.errors.NotFoundError:
                await self.js.add_stream(config)
        self._known.add(name)
        if spec.dead_letter:
            await self.ensure_dlq(spec.name)
        for group in spec.groups:
            await self.ensure_consumer(spec.name, group, start="earliest",
                                       max_attempts=spec.max_attempts)

    async def delete(self, topic: str) -> None:
        for name in (_names.stream_name(topic), _names.dlq_stream(topic)):
            self._known.discard(name)
            with boundary("topology", f"deleting stream {name}"), \
                    contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(name)

    # -- consumers --------------------------------------------------------------------------

    def consumer_config(
        self, topic: str, name: str, *, durable: bool, start: StartAt | None,
        max_attempts: int | None,
    ) -> api.ConsumerConfig:
        o = self.options
        max_deliver = -1 if max_attempts is None else max_attempts + 1
        backoff = list(o.backoff)
        if backoff and max_deliver > 0:
            backoff = backoff[: max_deliver - 1]
        return api.ConsumerConfig(
            name=name,
            durable_name=name if durable else None,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=o.ack_wait,
            backoff=backoff or None,
            max_deliver=max_deliver,
            max_ack_pending=o.max_ack_pending,
            filter_subject=_names.subject(topic),
            inactive_threshold=None if durable else max(60.0, o.ack_wait * 2),
            **deliver_policy(topic, start, durable),
        )

    async def ensure_consumer(
        self, topic: str, group: str, *, start: StartAt | None, max_attempts: int | None
    ) -> str:
        """The durable consumer of ``group`` on ``topic``; an existing one is kept as is
        (``start`` applies to a new group only)."""
        stream = await self.ensure(topic)
        name = _names.consumer_name(group)
        with boundary("topology", f"group {group!r} on topic {topic!r}"):
            try:
                info = await self.js.consumer_info(stream, name)
            except nats.js.errors.NotFoundError:
                config = self.consumer_config(topic, name, durable=True, start=start,
                                              max_attempts=max_attempts)
                await self.js.add_consumer(stream, config)
                return name
        await self._align_max_deliver(stream, info.config, max_attempts)
        return name

    async def _align_max_deliver(
        self, stream: str, config: api.ConsumerConfig, max_attempts: int | None
    ) -> None:
        """A group joined with another ``max_attempts``: the server-side limit follows, so a
        message is never stopped by the server before unibus can dead-letter it."""
        wanted = -1 if max_attempts is None else max_attempts + 1
        if config.max_deliver == wanted or (max_attempts is None and config.max_deliver is None):
            return
        config.max_deliver = wanted
        if config.backoff and wanted > 0:
            config.backoff = config.backoff[: wanted - 1] or None
        try:
            with boundary("topology", f"updating max_deliver of {config.name}"):
                await self.js.add_consumer(stream, config)
        except TopologyError as exc:
            log.warning("could not change max_deliver of %s to %d: %s", config.name, wanted, exc)

    async def create_consumer(self, topic: str, config: api.ConsumerConfig) -> None:
        stream = await self.ensure(topic)
        with boundary("topology", f"consumer on topic {topic!r}"):
            await self.js.add_consumer(stream, config)

    async def delete_consumer(self, topic: str, name: str) -> None:
        with boundary("topology", f"deleting consumer {name}"), \
                contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_consumer(_names.stream_name(topic), name)
