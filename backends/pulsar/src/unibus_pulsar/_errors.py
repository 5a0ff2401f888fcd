"""The one boundary where pulsar-client and httpx exceptions become unibus errors.

Every broker call of this backend runs inside :func:`boundary`; no pulsar or httpx exception
type reaches the caller. The client reports failures as a result code (``pulsar.Result``),
both from its asyncio API and from its synchronous one, so the mapping is by result name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import _pulsar  # type: ignore[import-not-found]
import httpx
import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]

from unibus.errors import (
    ClosedError,
    ConfigError,
    ConnectionFailedError,
    ExceptionMapping,
    OperationTimeoutError,
    PublishError,
    TopicNotFoundError,
    TopologyError,
    UnibusError,
    map_exceptions,
)

__all__ = ["CONNECTION_RESULTS", "boundary", "result_name", "while_unavailable"]

T = TypeVar("T")

#: Results that mean "the connection is gone or not yet back": the client reconnects.
CONNECTION_RESULTS = frozenset({
    "ConnectError", "NotConnected", "ServiceUnitNotReady", "TooManyLookupRequestException",
    "LookupError", "ReadError", "BrokerMetadataError", "BrokerPersistenceError",
})

_BY_RESULT: dict[str, type[UnibusError]] = {
    **dict.fromkeys(CONNECTION_RESULTS, ConnectionFailedError),
    "AuthenticationError": ConnectionFailedError,
    "AuthorizationError": ConnectionFailedError,
    "ErrorGettingAuthenticationData": ConnectionFailedError,
    "Timeout": OperationTimeoutError,
    "AlreadyClosed": ClosedError,
    "TopicNotFound": TopicNotFoundError,
    "SubscriptionNotFound": TopologyError,
    "InvalidTopicName": ConfigError,
    "InvalidUrl": ConfigError,
    "InvalidConfiguration": ConfigError,
    "OperationNotSupported": TopologyError,
    "NotAllowedError": TopologyError,
    "ConsumerBusy": TopologyError,
    "ProducerBusy": TopologyError,
    "ProducerQueueIsFull": PublishError,
    "MemoryBufferIsFull": PublishError,
    "TopicTerminated": PublishError,
    "ProducerBlockedQuotaExceededError": PublishError,
    "ProducerBlockedQuotaExceededException": PublishError,
}

# httpx (admin REST API): subclasses before bases.
_HTTP: ExceptionMapping = {
    httpx.TimeoutException: OperationTimeoutError,
    httpx.TransportError: ConnectionFailedError,
    httpx.HTTPStatusError: TopologyError,
}


def result_name(exc: BaseException) -> str | None:
    """The pulsar result code name of a client exception, or None for other exceptions."""
    if isinstance(exc, pulsar_asyncio.PulsarException):
        return str(exc.error().name)
    if isinstance(exc, _pulsar.PulsarException):
        return type(exc).__name__
    return None


@contextlib.contextmanager
def boundary(context: str, default: type[UnibusError]) -> Iterator[None]:
    """Translate what the block raises; ``default`` for client errors without a closer match.

    ``context`` says what was being done ("publish to orders"), and leads the message.
    """
    try:
        with map_exceptions(_HTTP, context=context):
            yield
    except UnibusError:
        raise
    except Exception as exc:
        name = result_name(exc)
        if name is None:
            raise
        if name == "MessageTooBig":
            raise PublishError(f"{context}: the broker refused the message as too large "
                               "(maxMessageSize)") from exc
        target = _BY_RESULT.get(name, default)
        raise target(f"{context}: {name} ({exc})") from exc



async def while_unavailable(attempt: Callable[[], Awaitable[T]], *, within: float) -> T:
    """Run ``attempt`` again while it fails with ConnectionFailedError (a broker that is
    restarting answers lookups with 'no available broker' for a while), up to ``within``
    seconds; then the last error propagates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.2
    while True:
        try:
            return await attempt()
        except ConnectionFailedError:
            if loop.time() + delay > deadline:
                raise
            await asyncio.sleep(delay)  # back off while the broker comes back
            delay = min(delay * 2, 2.0)
