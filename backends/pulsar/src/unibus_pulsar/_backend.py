"""PulsarBackend: the client, the admin API, and what they hand out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import pulsar  # type: ignore[import-untyped]

from unibus.backend import BaseBackend
from unibus.capabilities import Capabilities
from unibus.errors import ClosedError, ConfigError, ConnectionFailedError
from unibus.protocols import Consumer, DeadLetterQueue, Producer, StartAt
from unibus.topology import TopicSpec
from unibus_pulsar._admin import AdminClient
from unibus_pulsar._bridge import call
from unibus_pulsar._capabilities import declare
from unibus_pulsar._consumer import PulsarConsumer
from unibus_pulsar._dead_letters import DeadLetterWriter, PulsarDeadLetterQueue
from unibus_pulsar._errors import boundary
from unibus_pulsar._names import Names
from unibus_pulsar._options import PulsarOptions
from unibus_pulsar._producer import PulsarProducer
from unibus_pulsar._topology import Topology

__all__ = ["PulsarBackend"]

_client_log = logging.getLogger("unibus.pulsar.client")


def client_logger() -> Any:
    """Where the client writes its own log lines, filtered at the level of the
    ``unibus.pulsar.client`` logger.

    Given a Python logger, the client passes it every line, DEBUG included (two per message
    sent), each taking the GIL from the client's threads; so the logger is given only when it
    is enabled for DEBUG. Otherwise the client's console logger filters in C++ and writes
    what passes (warnings and errors by default) to standard output itself.
    """
    if _client_log.isEnabledFor(logging.DEBUG):
        return _client_log
    level = _client_log.getEffectiveLevel()
    if level <= logging.INFO:
        return pulsar.ConsoleLogger(pulsar.LoggerLevel.Info)
    if level <= logging.WARNING:
        return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)


class PulsarBackend(BaseBackend):
    """``pulsar://host:6650`` or ``pulsar+ssl://host:6651``; options in the query string."""

    name: ClassVar[str] = "pulsar"
    distribution: ClassVar[str] = "unibus-pulsar"
    Options: ClassVar[type[PulsarOptions]] = PulsarOptions

    def __init__(self, url: str, options: PulsarOptions) -> None:
        super().__init__(url, options)
        self.options: PulsarOptions = options
        self.names = Names(options.tenant, options.namespace)
        self._client: Any = None  # the client (``_pulsar.Client``), once connected
        self._topology: Topology | None = None
        self._unbatched: PulsarProducer | None = None
        self._producers: weakref.WeakSet[PulsarProducer] = weakref.WeakSet()
        self.dead_letter_writer = DeadLetterWriter(self)
        self._closed = False

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        return declare(options)

    @classmethod
    def variants(cls) -> list[tuple[str, PulsarOptions]]:
        """Modes whose capabilities differ, for 'installed backends that can' in refusals."""
        return [
            ("pulsar", PulsarOptions()),
            ("pulsar (subscription_type=key_shared)",
             PulsarOptions(subscription_type="key_shared")),
            ("pulsar (subscription_type=failover)",
             PulsarOptions(subscription_type="failover")),
        ]

    # -- addresses ----------------------------------------------------------------------------

    @property
    def service_url(self) -> str:
        p = self.parts
        host = p.netloc.rpartition("@")[2]
        return f"{p.scheme}://{host}"

    @property
    def admin_url(self) -> str:
        if self.options.admin_url:
            return self.options.admin_url
        host = self.parts.hostname or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        if self.parts.scheme == "pulsar+ssl":
            return f"https://{host}:8443"
        return f"http://{host}:8080"

    # -- connection ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The C++ client: operations go through ``_bridge.call``, never pulsar.asyncio."""
        if self._closed:
            raise ClosedError("the Pulsar backend is closed")
        if self._client is None:
            raise ClosedError("the Pulsar backend is not connected")
        return self._client

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            raise ClosedError("the Pulsar backend is not connected")
        return self._topology

    @property
    def unbatched_producer(self) -> PulsarProducer:
        """One entry per message: dead letters and their replays."""
        if self._unbatched is None:
            self._unbatched = PulsarProducer(self, batched=False)
            self._producers.add(self._unbatched)
        return self._unbatched

    def _client_kwargs(self) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "operation_timeout_seconds": max(1, int(o.operation_timeout)),
            "connection_timeout_ms": int(o.connect_timeout * 1000),
            "logger": client_logger(),
        }
        if o.auth_token:
            kwargs["authentication"] = pulsar.AuthenticationToken(o.auth_token)
        if self.parts.scheme == "pulsar+ssl":
            kwargs["use_tls"] = True
            kwargs["tls_allow_insecure_connection"] = o.tls_allow_insecure
            kwargs["tls_validate_hostname"] = o.tls_validate_hostname
            if o.tls_trust_certs:
                kwargs["tls_trust_certs_file_path"] = o.tls_trust_certs
        return kwargs

    async def connect(self) -> None:
        if self._closed:
            raise ClosedError("the Pulsar backend is closed")
        if self._client is not None:
            return
        o = self.options
        try:
            # pulsar.Client turns the options into the C++ client's configuration.
            client = pulsar.Client(self.service_url, **self._client_kwargs())._client
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid Pulsar URL or options: {exc}") from exc
        verify: bool | str = o.tls_trust_certs or not o.tls_allow_insecure
        admin = AdminClient(self.admin_url, tenant=o.tenant, namespace=o.namespace,
                            token=o.auth_token, verify=verify, timeout=o.operation_timeout)
        try:
            probe = self.names.topic("unibus-connect-probe")
            with boundary(f"connect to Pulsar at {self.service_url}", ConnectionFailedError):
                await asyncio.wait_for(
                    call(lambda done: client.get_topic_partitions_async(probe, done)),
                    o.connect_timeout)
            if o.deduplication and o.auto_create:
                await admin.enable_deduplication()
        except TimeoutError as exc:
            await self._abandon(client, admin)
            raise ConnectionFailedError(
                f"Pulsar at {self.service_url} did not answer within {o.connect_timeout}s; "
                "start it with `uv run python -m unibus.devstack up pulsar`") from exc
        except BaseException:
            await self._abandon(client, admin)
            raise
        self._client = client
        self._topology = Topology(self, admin)

    @staticmethod
    async def _abandon(client: Any, admin: AdminClient) -> None:
        with contextlib.suppress(Exception):
            await admin.close()
        with contextlib.suppress(Exception):
            await call(client.close_async)

    async def _disconnect(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._unbatched is not None:
            await self._unbatched.close()
        if self._topology is not None:
            await self._topology.admin.close()
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await call(client.close_async)

    # -- the Backend protocol -----------------------------------------------------------------

    def producer(self) -> Producer:
        self.client  # noqa: B018  (raises ClosedError when not usable)
        producer = PulsarProducer(self)
        self._producers.add(producer)
        return self.own(producer)  # type: ignore[no-any-return]

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        self.client  # noqa: B018
        if not topics:
            raise ConfigError("subscribe to at least one topic")
        if prefetch < 1:
            raise ConfigError("prefetch must be at least 1")
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if group is not None:
            self.require(self.capabilities.consumer_groups, f"consumer group {group!r}",
                         "consumer_groups")
        for topic in topics:
            self.names.topic(topic)
        if not self.options.auto_create:
            await self._require_topics(topics)
        consumer = PulsarConsumer(self, topics, group, prefetch=prefetch,
                                  max_attempts=max_attempts)
        await consumer.open(start)
        return self.own(consumer)  # type: ignore[no-any-return]

    async def _require_topics(self, topics: Sequence[str]) -> None:
        from unibus.errors import TopicNotFoundError

        for topic in topics:
            if not await self.topology.exists(topic):
                raise TopicNotFoundError(
                    f"topic {topic!r} does not exist and auto_create is off; provision it "
                    "first (bus.provision)")

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        self.client  # noqa: B018
        self.names.topic(topic)
        return PulsarDeadLetterQueue(self, topic, group)

    async def provision(self, spec: TopicSpec) -> None:
        await self.topology.provision(spec)

    async def delete_topic(self, topic: str) -> None:
        # A client producer left open on a deleted topic reconnects and, with the broker's
        # auto-creation, brings the topic back: close ours first.
        for producer in list(self._producers):
            await producer.release(topic)
        await self.topology.delete(topic)

    @classmethod
    def url_options(cls, parts: urllib.parse.SplitResult) -> dict[str, Any]:
        if parts.scheme not in ("pulsar", "pulsar+ssl"):
            raise ConfigError(f"the Pulsar backend serves pulsar:// and pulsar+ssl://, "
                              f"not {parts.scheme}://")
        if parts.password and "auth_token" not in urllib.parse.parse_qs(parts.query):
            return {"auth_token": urllib.parse.unquote(parts.password)}
        return {}
