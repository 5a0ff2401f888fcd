"""The NATS backend: JetStream by default, core NATS with ``mode=core``.

URL: ``nats://[user:password@|token@]host[:port][,host[:port]...][?option=value...]``;
``tls+nats://`` connects with TLS (``tls_ca``, ``tls_cert``, ``tls_key`` options).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

from nats.aio.client import Client
from nats.js import JetStreamContext

from unibus.backend import BaseBackend
from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, ClosedError, ConfigError, ConnectionFailedError
from unibus.message import Message
from unibus.protocols import Consumer, DeadLetterQueue, Producer, StartAt
from unibus.topology import TopicSpec
from unibus_nats import _names
from unibus_nats._capabilities import declare
from unibus_nats._client import UnibusClient
from unibus_nats._consumer import JetStreamConsumer
from unibus_nats._core import CoreConsumer
from unibus_nats._dead_letters import DeadLetterWriter, NATSDeadLetterQueue
from unibus_nats._errors import boundary
from unibus_nats._options import NATSOptions
from unibus_nats._producer import CoreProducer, JetStreamProducer
from unibus_nats._topology import Topology

__all__ = ["NATSBackend"]

log = logging.getLogger("unibus.nats")


class NATSBackend(BaseBackend):
    name: ClassVar[str] = "nats"
    distribution: ClassVar[str] = "unibus-nats"
    Options: ClassVar[type[NATSOptions]] = NATSOptions

    def __init__(self, url: str, options: NATSOptions) -> None:
        super().__init__(url, options)
        self.options: NATSOptions = options
        self.servers, self._auth = _servers(self.parts)
        self._nc: UnibusClient | None = None
        self._js: JetStreamContext | None = None
        self._topology: Topology | None = None
        self._closed = False

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        return declare(options)

    @classmethod
    def url_options(cls, parts: urllib.parse.SplitResult) -> dict[str, Any]:
        return {"tls": True} if parts.scheme == "tls+nats" else {}

    @classmethod
    def variants(cls) -> list[tuple[str, NATSOptions]]:
        return [("nats", NATSOptions()), ("nats?mode=core", NATSOptions(mode="core"))]

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._nc is not None:
            return
        o = self.options
        kwargs: dict[str, Any] = {
            "servers": self.servers,
            "name": o.client_id,
            "connect_timeout": o.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": o.reconnect_wait,
            "error_cb": _on_error,
            "disconnected_cb": _on_disconnected,
            "reconnected_cb": _on_reconnected,
            **self._auth,
        }
        if o.token:
            kwargs["token"] = o.token
        if o.creds:
            kwargs["user_credentials"] = o.creds
        if o.nkeys_seed:
            kwargs["nkeys_seed"] = o.nkeys_seed
        if o.tls:
            kwargs["tls"] = _tls_context(o)
        with boundary("connect", f"connecting to {', '.join(self.servers)}"):
            try:
                nc = UnibusClient()
                await asyncio.wait_for(nc.connect(**kwargs), o.connect_timeout * 2)
            except TimeoutError:
                raise ConnectionFailedError(
                    f"no NATS server answered at {', '.join(self.servers)} within "
                    f"{o.connect_timeout}s") from None
        self._nc = nc
        if o.mode == "jetstream":
            js = nc.jetstream(timeout=o.publish_timeout,
                              publish_async_max_pending=o.publish_window)
            try:
                with boundary("connect", "checking JetStream"):
                    await js.account_info()
            except Exception:
                await nc.close()
                self._nc = None
                raise ConnectionFailedError(
                    f"JetStream is not enabled on {', '.join(self.servers)}: start nats-server "
                    "with -js, or connect with mode=core") from None
            self._js = js
            self._topology = Topology(js, o, self.name)

    def _conn(self) -> tuple[UnibusClient, JetStreamContext, Topology]:
        if self._closed:
            raise ClosedError("the NATS backend is closed")
        if self._nc is None:
            raise ClosedError("the NATS backend is not connected: open the bus first")
        if self._js is None or self._topology is None:
            raise CapabilityError("JetStream", self.capabilities.reason("replay"),
                                  backend=self.name)
        return self._nc, self._js, self._topology

    def _core_conn(self) -> Client:
        if self._closed or self._nc is None:
            raise ClosedError("the NATS backend is closed or not connected")
        return self._nc

    async def _disconnect(self) -> None:
        self._closed = True
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=1)
            await nc.close()

    # -- producing and consuming ------------------------------------------------------------

    def producer(self) -> Producer:
        if self.options.mode == "core":
            return self.own(CoreProducer(self._core_conn(), self.capabilities, self.options))  # type: ignore[no-any-return]
        nc, js, topology = self._conn()
        return self.own(JetStreamProducer(nc, js, topology, self.capabilities, self.options))  # type: ignore[no-any-return]

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        if not topics:
            raise ConfigError("subscribe to at least one topic")
        if self.options.mode == "core":
            if max_attempts is not None:
                raise CapabilityError(f"max_attempts={max_attempts}",
                                      self.capabilities.reason("dead_letter"), backend=self.name)
            if start not in (None, "latest"):
                self.require(False, f"start={start!r}", "replay")
            core = CoreConsumer(topics, group, capabilities=self.capabilities,
                                prefetch=prefetch, nc=self._core_conn())
            await core.start()
            return self.own(core)  # type: ignore[no-any-return]
        nc, js, topology = self._conn()
        consumer = JetStreamConsumer(
            topics, group, capabilities=self.capabilities, prefetch=prefetch,
            max_attempts=max_attempts, nc=nc, js=js, topology=topology,
            writer=DeadLetterWriter(js, topology, self.options), options=self.options)
        await consumer.start(start)
        return self.own(consumer)  # type: ignore[no-any-return]

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        if self.options.mode == "core":
            raise CapabilityError("dead-letter queue", self.capabilities.reason("dead_letter"),
                                  backend=self.name)
        nc, js, topology = self._conn()
        _names.subject(topic)
        replayer = JetStreamProducer(nc, js, topology, self.capabilities, self.options)

        async def publish(target: str, message: Message, msg_id: str) -> object:
            return await replayer.publish(target, message, msg_id=msg_id)

        return NATSDeadLetterQueue(nc, js, topology, publish, topic, group)

    # -- topology ---------------------------------------------------------------------------

    async def provision(self, spec: TopicSpec) -> None:
        if self.options.mode == "core":
            _names.subject(spec.name)
            for field, asked in (("retention", spec.retention is not None),
                                 ("dead_letter", spec.max_attempts is not None),
                                 ("replay", spec.partitions > 1)):
                if asked:
                    raise CapabilityError(f"{field} in topic spec", self.capabilities.reason(
                        field if field != "replay" else "retention"), backend=self.name)
            return
        await self._conn()[2].provision(spec)

    async def delete_topic(self, topic: str) -> None:
        if self.options.mode == "core":
            return
        await self._conn()[2].delete(topic)


def _servers(parts: urllib.parse.SplitResult) -> tuple[list[str], dict[str, str]]:
    userinfo, _, hosts = parts.netloc.rpartition("@")
    auth: dict[str, str] = {}
    if userinfo:
        user, sep, password = userinfo.partition(":")
        user = urllib.parse.unquote(user)
        if sep:
            auth = {"user": user, "password": urllib.parse.unquote(password)}
        else:
            auth = {"token": user}
    servers = []
    for host in hosts.split(","):
        host = host.strip()
        if not host:
            raise ConfigError(f"empty server in NATS URL {parts.geturl()!r}")
        if ":" not in host.rsplit("]", 1)[-1]:
            host += ":4222"
        servers.append(f"nats://{host}")
    return servers, auth


def _tls_context(options: NATSOptions) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=options.tls_ca)
        if options.tls_cert:
            context.load_cert_chain(options.tls_cert, options.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS options: {exc}") from exc
    return context


async def _on_error(exc: Exception) -> None:
    log.debug("nats client error: %r", exc)


async def _on_disconnected() -> None:
    log.info("disconnected from NATS; reconnecting")


async def _on_reconnected() -> None:
    log.info("reconnected to NATS")
