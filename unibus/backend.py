"""The base class backends build on: options, capabilities and owned resources."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pydantic

from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, ConfigError
from unibus.options import BackendOptions
from unibus.protocols import Consumer, DeadLetterQueue, Producer, StartAt
from unibus.topology import TopicSpec

__all__ = ["BaseBackend", "parse_url"]


def parse_url(url: str) -> urllib.parse.SplitResult:
    """Split a broker URL; ConfigError when it has no usable scheme."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("a broker URL is required, e.g. 'kafka://localhost:9092'")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        # A comma-separated server list (nats://a:4222,b:4222): validate each host's port.
        for host in parts.netloc.rpartition("@")[2].split(","):
            urllib.parse.urlsplit(f"//{host}").port  # noqa: B018  (validates the port)
    except ValueError as exc:
        raise ConfigError(f"malformed broker URL {url!r}: {exc}") from exc
    if not parts.scheme or "://" not in url:
        raise ConfigError(
            f"malformed broker URL {url!r}: expected scheme://..., e.g. 'sqlite:///bus.db'"
        )
    return parts


class BaseBackend:
    """Options parsing, the capability declaration and close-what-you-made."""

    name: ClassVar[str] = "backend"
    distribution: ClassVar[str] = "unibus"
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, url: str, options: BackendOptions) -> None:
        self.url = url
        self.parts = parse_url(url)
        self.options = options
        self.capabilities = type(self).declare(options)
        self._owned: list[Any] = []

    @classmethod
    def declare(cls, options: Any) -> Capabilities:
        raise NotImplementedError

    @classmethod
    def parse_options(
        cls, url: str, overrides: Mapping[str, Any] | None = None
    ) -> BackendOptions:
        """Options from the URL query string, then ``overrides``; ConfigError when invalid."""
        parts = parse_url(url)
        values: dict[str, Any] = dict(urllib.parse.parse_qsl(parts.query))
        values.update(cls.url_options(parts))
        values.update(overrides or {})
        try:
            return cls.Options.model_validate(values)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid options for {cls.name}: {problems}") from None

    @classmethod
    def url_options(cls, parts: urllib.parse.SplitResult) -> dict[str, Any]:
        """Options implied by the URL itself (e.g. a scheme alias meaning FIFO mode)."""
        return {}

    # -- the Backend protocol; see unibus.protocols for each contract ------------------------

    async def connect(self) -> None:
        raise NotImplementedError

    def producer(self) -> Producer:
        raise NotImplementedError

    async def consumer(
        self, topics: Sequence[str], *, group: str | None = None,
        start: StartAt | None = None, prefetch: int = 100, max_attempts: int | None = None,
    ) -> Consumer:
        raise NotImplementedError

    def dead_letter_queue(self, topic: str, group: str | None = None) -> DeadLetterQueue:
        raise NotImplementedError

    async def provision(self, spec: TopicSpec) -> None:
        raise NotImplementedError

    async def delete_topic(self, topic: str) -> None:
        raise NotImplementedError

    def require(self, ok: bool, requirement: str, dimension: str) -> None:
        """Refuse an operation the declaration says this backend cannot do."""
        if not ok:
            raise CapabilityError(
                requirement, self.capabilities.reason(dimension), backend=self.name
            )

    def own(self, resource: Any) -> Any:
        """Remember a producer or consumer so :meth:`close` closes it."""
        self._owned.append(resource)
        return resource

    async def close(self) -> None:
        owned, self._owned = self._owned, []
        # Consumers first (they may still settle through producers), then producers.
        owned.sort(key=lambda r: 0 if hasattr(r, "receive") else 1)
        for resource in owned:
            await resource.close()
        await self._disconnect()

    async def _disconnect(self) -> None:
        """Close broker connections."""
