"""The unibus error tree.

Every error unibus raises derives from :class:`UnibusError`; no client library's exception
reaches the caller. Where a builtin fits, the error also derives from it, so generic handlers
(``except ValueError``, ``except ConnectionError``, ``except TimeoutError``) keep working::

    UnibusError
    ├── ConfigError (ValueError)                 bad URL, option or requirement
    │   ├── UnknownSchemeError                    no backend knows the URL scheme
    │   └── BackendNotInstalledError (ImportError) a known backend is not installed
    ├── CapabilityError                           the backend cannot honour what was asked
    ├── ConnectionFailedError (ConnectionError)   broker unreachable, lost, auth refused
    ├── OperationTimeoutError (TimeoutError)      the broker did not answer in time
    ├── TopologyError                             topic/queue/stream missing or not creatable
    │   └── TopicNotFoundError (LookupError)
    ├── PublishError                              the broker refused or lost a publish
    │   ├── InvalidMessageError (ValueError)      malformed key, header or field
    │   ├── MessageTooLargeError (ValueError)
    │   └── SerializationError (ValueError)       body could not be encoded or decoded
    ├── ConsumeError                              receiving failed
    ├── SettlementError                           ack/nack/dead_letter could not be applied
    │   └── AlreadySettledError                   the delivery was settled before
    └── ClosedError                               the object was used after close()

Backends translate client exceptions at one boundary with :func:`map_exceptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

__all__ = [
    "AlreadySettledError",
    "BackendNotInstalledError",
    "CapabilityError",
    "ClosedError",
    "ConfigError",
    "ConnectionFailedError",
    "ConsumeError",
    "InvalidMessageError",
    "MessageTooLargeError",
    "OperationTimeoutError",
    "PublishError",
    "SerializationError",
    "SettlementError",
    "TopicNotFoundError",
    "TopologyError",
    "UnibusError",
    "UnknownSchemeError",
    "map_exceptions",
]


class UnibusError(Exception):
    """Root of every error unibus raises."""


class ConfigError(UnibusError, ValueError):
    """A URL, option or requirement is invalid. Fix the configuration; retrying will not help."""


class UnknownSchemeError(ConfigError):
    """No installed or known backend serves the URL scheme."""


class BackendNotInstalledError(ConfigError, ImportError):
    """The URL names a known backend whose distribution is not installed."""

    def __init__(self, scheme: str, distribution: str) -> None:
        self.scheme = scheme
        self.distribution = distribution
        super().__init__(
            f"the {scheme!r} backend is not installed: run `pip install {distribution}` "
            f"(or `pip install 'unibus[{distribution.removeprefix('unibus-')}]'`)"
        )


class CapabilityError(UnibusError):
    """The backend, as configured, cannot honour a requirement or an operation.

    ``requirement`` names what was asked, ``reason`` why this backend cannot do it, and
    ``alternatives`` the installed backends (URL schemes) that could.
    """

    def __init__(
        self,
        requirement: str,
        reason: str,
        *,
        backend: str = "",
        alternatives: tuple[str, ...] = (),
    ) -> None:
        self.requirement = requirement
        self.reason = reason
        self.backend = backend
        self.alternatives = alternatives
        where = f" on {backend}" if backend else ""
        message = f"{requirement} is not available{where}: {reason}"
        if alternatives:
            message += f"; installed backends that can: {', '.join(alternatives)}"
        super().__init__(message)


class ConnectionFailedError(UnibusError, ConnectionError):
    """The broker could not be reached, refused us, or the connection was lost."""


class OperationTimeoutError(UnibusError, TimeoutError):
    """The broker did not answer within the deadline."""


class TopologyError(UnibusError):
    """A topic, queue, stream or subscription is missing or could not be provisioned."""


class TopicNotFoundError(TopologyError, LookupError):
    """The topic does not exist and the backend was told not to create it."""


class PublishError(UnibusError):
    """The broker refused a publish, or its outcome is unknown. Nothing was acknowledged."""


class InvalidMessageError(PublishError, ValueError):
    """A message field, key or header is malformed (wrong type, reserved name, too long)."""


class MessageTooLargeError(PublishError, ValueError):
    """The encoded message exceeds the backend's maximum size."""

    def __init__(self, size: int, limit: int, backend: str) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message of {size} bytes exceeds the {limit}-byte limit of {backend}; "
            "split the payload or store it elsewhere and send a reference"
        )


class SerializationError(PublishError, ValueError):
    """A body could not be encoded to bytes, or bytes could not be decoded."""


class ConsumeError(UnibusError):
    """Receiving from the broker failed."""


class SettlementError(UnibusError):
    """An ack, nack or dead-letter could not be applied; the message will be redelivered."""


class AlreadySettledError(SettlementError):
    """A delivery is settled exactly once; this one was settled before."""


class ClosedError(UnibusError):
    """The producer, consumer or bus was used after it was closed."""


ExceptionMapping = Mapping[type[BaseException], type[UnibusError]]


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMapping, *, context: str = "") -> Iterator[None]:
    """Translate client exceptions into unibus errors at one boundary.

    The first entry of ``mapping`` that the raised exception is an instance of wins, so list
    subclasses before their bases; targets take a single message. Unibus errors pass through
    untouched; anything unmapped propagates unchanged (a backend bug the contract suite
    catches). The original
    exception is chained (``raise ... from exc``).
    """
    try:
        yield
    except UnibusError:
        raise
    except Exception as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                detail = str(exc) or type(exc).__name__
                prefix = f"{context}: " if context else ""
                raise target(f"{prefix}{detail}") from exc
        raise

