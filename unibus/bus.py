"""``unibus.connect``: pick a backend by URL, check requirements, hand out a :class:`Bus`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any

import pydantic

from unibus.backend import BaseBackend, parse_url
from unibus.capabilities import Capabilities, Requirements, shortfalls
from unibus.config import load_settings
from unibus.errors import CapabilityError, ClosedError, ConfigError
from unibus.message import Message, Receipt
from unibus.protocols import Consumer, DeadLetterQueue, Delivery, Producer, StartAt
from unibus.registry import backend_class, installed_backends
from unibus.reliability.breaker import CircuitBreaker
from unibus.reliability.idempotency import IdempotencyStore
from unibus.reliability.policy import RetryPolicy
from unibus.reliability.runner import AlertHook, Subscription
from unibus.serializers import BytesSerializer, Serializer, serializer_for
from unibus.topology import TopicSpec

__all__ = ["Bus", "check_requirements", "connect"]


def connect(
    url: str | None = None,
    *,
    requirements: Requirements | Mapping[str, Any] | None = None,
    serializer: str | Serializer | None = None,
    **options: Any,
) -> Bus:
    """A :class:`Bus` for ``url`` (default: ``UNIBUS_URL``, the YAML config, or the embedded
    SQLite default). Nothing connects yet: ``async with unibus.connect(...) as bus`` or
    ``bus = await unibus.connect(...)`` opens it.

    The URL, options and requirements are all checked first: ConfigError for bad input,
    BackendNotInstalledError with the install command, CapabilityError for a requirement the
    backend cannot honour.
    """
    reqs_in: Any = requirements
    if isinstance(requirements, Requirements):
        reqs_in = requirements.model_dump(exclude_defaults=True)
    settings = load_settings(
        url=url,
        requirements=reqs_in,
        serializer=serializer if isinstance(serializer, str) else None,
    )
    reqs = settings.requirements
    merged = {**settings.options, **options}
    backend_cls = backend_class(parse_url(settings.url).scheme)
    backend_options = backend_cls.parse_options(settings.url, merged)
    check_requirements(backend_cls, backend_cls.declare(backend_options), reqs)
    chosen = serializer if serializer is not None and not isinstance(serializer, str) \
        else settings.serializer
    backend = backend_cls(settings.url, backend_options)
    return Bus(backend, requirements=reqs, serializer=serializer_for(chosen))


def check_requirements(backend_cls: Any, caps: Capabilities, reqs: Requirements) -> None:
    """Raise CapabilityError naming every shortfall and the installed backends that can."""
    missing = shortfalls(reqs, caps)
    if not missing:
        return
    able: list[str] = []
    for name, cls in installed_backends().items():
        if name == backend_cls.name:
            continue
        for label, opts in variants(cls):
            if not shortfalls(reqs, cls.declare(opts)):
                able.append(label)
                break
    raise CapabilityError(
        ", ".join(s.requirement for s in missing),
        "; ".join(s.reason for s in missing),
        backend=backend_cls.name,
        alternatives=tuple(able),
    )


def variants(cls: Any) -> list[tuple[str, Any]]:
    """(label, options) pairs a backend offers; backends with modes list each mode."""
    listed = getattr(cls, "variants", None)
    if listed is not None:
        return list(listed())
    try:
        return [(cls.name, cls.Options())]
    except pydantic.ValidationError:
        return []


def _check_delay(delay: float | None) -> None:
    if delay is not None and not delay >= 0:
        raise ConfigError(f"delay must be a non-negative number of seconds, got {delay!r}")


class Bus:
    """One backend, one shared producer, a serializer: the application's handle.

    Safe for concurrent use by tasks of one event loop. Closing the bus closes every consumer
    and producer it made (consumers drain first).
    """

    def __init__(
        self,
        backend: BaseBackend,
        *,
        requirements: Requirements | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        self.backend = backend
        self.requirements = requirements or Requirements()
        self.serializer = serializer or serializer_for("json")
        self._producer: Producer | None = None
        self._open = False
        self._closed = False

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    async def open(self) -> Bus:
        if self._closed:
            raise ClosedError("the bus is closed")
        if not self._open:
            await self.backend.connect()
            self._open = True
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._open:
            await self.backend.close()

    def __await__(self) -> Generator[Any, None, Bus]:
        return self.open().__await__()

    async def __aenter__(self) -> Bus:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- producing --------------------------------------------------------------------------

    def message(self, body: Any = b"", **fields: Any) -> Message:
        """A message whose body is ``body`` encoded by the bus serializer (bytes as they are)."""
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:
            data = self.serializer.encode(body)
            fields.setdefault("content_type", self.serializer.content_type)
        return Message(body=data, **fields)

    @property
    def producer(self) -> Producer:
        self._check_open()
        if self._producer is None:
            self._producer = self.backend.producer()
        return self._producer

    async def publish(
        self, topic: str, body: Any = b"", *, delay: float | None = None, **fields: Any
    ) -> Receipt:
        """Publish ``body`` (a Message is sent as it is) with envelope ``fields``
        (key, headers, type, subject, correlation_id, ...)."""
        message = body if isinstance(body, Message) else self.message(body, **fields)
        _check_delay(delay)
        return await self.producer.publish(topic, message, delay=delay)

    async def publish_many(
        self, topic: str, bodies: Sequence[Any], *, delay: float | None = None
    ) -> list[Receipt]:
        messages = [b if isinstance(b, Message) else self.message(b) for b in bodies]
        _check_delay(delay)
        return await self.producer.publish_many(topic, messages, delay=delay)

    # -- consuming --------------------------------------------------------------------------

    async def consumer(
        self,
        topics: str | Sequence[str],
        *,
        group: str | None = None,
        start: StartAt | None = None,
        prefetch: int = 100,
        max_attempts: int | None = None,
    ) -> Consumer:
        """Subscribe; see :meth:`unibus.protocols.Backend.consumer` for the contract."""
        self._check_open()
        names = (topics,) if isinstance(topics, str) else tuple(topics)
        if not names:
            raise ConfigError("subscribe to at least one topic")
        if prefetch < 1:
            raise ConfigError("prefetch must be at least 1")
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if group is not None and not self.capabilities.consumer_groups:
            self.backend.require(False, f"consumer group {group!r}", "consumer_groups")
        if start not in (None, "latest") and not self.capabilities.replay:
            self.backend.require(False, f"start={start!r}", "replay")
        return await self.backend.consumer(
            names, group=group, start=start, prefetch=prefetch, max_attempts=max_attempts
        )

    async def subscribe(
        self,
        topics: str | Sequence[str],
        handler: Callable[[Any], Awaitable[None]],
        *,
        group: str | None = None,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        idempotency: IdempotencyStore | None = None,
        breaker: CircuitBreaker | None = None,
        on_dead_letter: AlertHook | None = None,
        poison_threshold: int | None = None,
        into: type[Any] | None = None,
        prefetch: int | None = None,
        start: StartAt | None = None,
    ) -> Subscription:
        """Run ``handler`` for every message, with retries, dead-lettering and the rest of
        the reliability layer (see :mod:`unibus.reliability`). ``handler`` receives the
        :class:`Message`, or the body decoded as ``into`` when given. Stop it with
        ``await subscription.stop()`` (or ``async with``)."""
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        policy = policy or RetryPolicy()
        consumer = await self.consumer(
            topics, group=group, start=start, prefetch=prefetch or max(concurrency * 4, 16),
            max_attempts=policy.max_attempts,
        )
        decode = None if into is None else (lambda m: self.decode(m, into))

        def reopen() -> Awaitable[Consumer]:
            # A group keeps its place; ``start`` only applies to a new group. An ungrouped
            # consumer starts afresh rather than replaying from ``start`` again.
            return self.consumer(
                topics, group=group, start=start if group is not None else None,
                prefetch=prefetch or max(concurrency * 4, 16), max_attempts=policy.max_attempts,
            )

        return Subscription(
            consumer, handler, policy=policy, concurrency=concurrency,
            idempotency=idempotency, breaker=breaker, on_dead_letter=on_dead_letter,
            poison_threshold=poison_threshold, decode=decode, reopen=reopen,
        ).start()

    def decode(self, delivery: Delivery | Message, into: type[Any] | None = None) -> Any:
        """The body as an object, decoded by its content type (bytes stay bytes)."""
        message = delivery if isinstance(delivery, Message) else delivery.message
        if message.content_type in (None, BytesSerializer.content_type):
            return BytesSerializer().decode(message.body, into)
        return self.serializer.decode(message.body, into)

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        self._check_open()
        return self.backend.dead_letter_queue(topic, group)

    # -- topology ---------------------------------------------------------------------------

    async def provision(self, spec: TopicSpec | str, **fields: Any) -> TopicSpec:
        """Create a topic and what hangs off it (idempotent); returns the spec applied."""
        self._check_open()
        if isinstance(spec, str):
            try:
                spec = TopicSpec(name=spec, **fields)
            except pydantic.ValidationError as exc:
                raise ConfigError(f"invalid topic spec: {exc}") from None
        await self.backend.provision(spec)
        return spec

    async def delete_topic(self, topic: str) -> None:
        self._check_open()
        await self.backend.delete_topic(topic)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the bus is closed")
        if not self._open:
            raise ClosedError(
                "the bus is not open: use `async with unibus.connect(...) as bus` "
                "or `bus = await unibus.connect(...)`"
            )
