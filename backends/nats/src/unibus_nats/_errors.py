"""The one place nats-py exceptions become unibus errors.

Every call into nats-py goes through :func:`boundary`, which picks the error an operation's
caller expects for failures that are not about connectivity or time (a failed publish is a
PublishError, a failed ack a SettlementError, ...).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Literal

import nats.errors
import nats.js.errors

from unibus import errors
from unibus.errors import ExceptionMapping, map_exceptions

__all__ = ["boundary", "is_not_found", "is_transient"]

Operation = Literal["connect", "publish", "consume", "settle", "topology"]

_CONNECTIVITY: ExceptionMapping = {
    nats.errors.AuthorizationError: errors.ConnectionFailedError,
    nats.errors.InvalidUserCredentialsError: errors.ConnectionFailedError,
    nats.errors.NoServersError: errors.ConnectionFailedError,
    nats.errors.ConnectionClosedError: errors.ConnectionFailedError,
    nats.errors.StaleConnectionError: errors.ConnectionFailedError,
    nats.errors.ConnectionReconnectingError: errors.ConnectionFailedError,
    nats.errors.ConnectionDrainingError: errors.ConnectionFailedError,
    nats.errors.OutboundBufferLimitError: errors.ConnectionFailedError,
    nats.errors.SecureConnFailedError: errors.ConnectionFailedError,
    nats.errors.SecureConnRequiredError: errors.ConfigError,
    nats.errors.SecureConnWantedError: errors.ConfigError,
    nats.errors.TimeoutError: errors.OperationTimeoutError,
    TimeoutError: errors.OperationTimeoutError,
    ConnectionError: errors.ConnectionFailedError,
    OSError: errors.ConnectionFailedError,
}

_BY_OPERATION: dict[Operation, type[errors.UnibusError]] = {
    "connect": errors.ConnectionFailedError,
    "publish": errors.PublishError,
    "consume": errors.ConsumeError,
    "settle": errors.SettlementError,
    "topology": errors.TopologyError,
}


@functools.cache
def _mapping(operation: Operation) -> ExceptionMapping:
    fallback = _BY_OPERATION[operation]
    specific: ExceptionMapping = {
        nats.js.errors.NoStreamResponseError: errors.TopicNotFoundError,
        nats.errors.MaxPayloadError: errors.PublishError,
        nats.errors.BadSubjectError: errors.ConfigError,
        nats.errors.BadHeaderError: errors.InvalidMessageError,
        nats.errors.MsgAlreadyAckdError: errors.AlreadySettledError,
        nats.js.errors.NotFoundError: (
            errors.TopicNotFoundError if operation != "settle" else errors.SettlementError
        ),
        nats.js.errors.ServiceUnavailableError: errors.OperationTimeoutError,
        nats.errors.NoRespondersError: (
            errors.ConnectionFailedError if operation == "connect" else fallback
        ),
    }
    return {**_CONNECTIVITY, **specific, nats.errors.Error: fallback, ValueError: fallback}


@contextlib.contextmanager
def boundary(operation: Operation, context: str = "") -> Iterator[None]:
    """Translate nats-py exceptions raised inside into the unibus error tree."""
    with map_exceptions(_mapping(operation), context=context):
        yield


def is_not_found(exc: BaseException) -> bool:
    """A JetStream 404 (stream, consumer or message not found)."""
    return isinstance(exc, nats.js.errors.NotFoundError)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying once the client has reconnected."""
    return isinstance(exc, (TimeoutError, nats.errors.ConnectionReconnectingError,
                            nats.errors.StaleConnectionError, nats.errors.ConnectionClosedError,
                            nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                            nats.js.errors.ServiceUnavailableError,
                            nats.errors.OutboundBufferLimitError))
