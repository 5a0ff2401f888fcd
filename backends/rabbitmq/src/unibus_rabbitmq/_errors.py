"""The one boundary where aio-pika / aiormq exceptions become unibus errors.

Every broker call of this backend runs inside one of the context managers below; no client
exception type reaches the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import aiormq.exceptions as amqp
import pamqp.exceptions

from unibus.errors import (
    ConnectionFailedError,
    ConsumeError,
    ExceptionMapping,
    OperationTimeoutError,
    PublishError,
    SettlementError,
    TopicNotFoundError,
    TopologyError,
    map_exceptions,
)

__all__ = ["connecting", "consuming", "publishing", "settling", "topology"]

# Lost or unusable connections, in every context. Subclasses before bases.
_CONNECTION: ExceptionMapping = {
    TimeoutError: OperationTimeoutError,  # an OSError: list it first
    amqp.ProbableAuthenticationError: ConnectionFailedError,
    amqp.AuthenticationError: ConnectionFailedError,
    amqp.AMQPConnectionError: ConnectionFailedError,
    amqp.ChannelInvalidStateError: ConnectionFailedError,
    ConnectionError: ConnectionFailedError,
    OSError: ConnectionFailedError,
}

_CONNECT: ExceptionMapping = {
    **_CONNECTION,
    TimeoutError: ConnectionFailedError,  # keeps its place (first), changes its target
    amqp.AMQPError: ConnectionFailedError,
    pamqp.exceptions.PAMQPException: ConnectionFailedError,
    RuntimeError: ConnectionFailedError,
}

_PUBLISH: ExceptionMapping = {
    amqp.ChannelNotFoundEntity: TopicNotFoundError,
    amqp.DeliveryError: PublishError,
    amqp.ChannelClosed: PublishError,
    **_CONNECTION,
    amqp.AMQPError: PublishError,
    pamqp.exceptions.PAMQPException: PublishError,
    RuntimeError: ConnectionFailedError,  # aio-pika: "channel/connection closed"
}

_TOPOLOGY: ExceptionMapping = {
    amqp.ChannelNotFoundEntity: TopologyError,
    amqp.ChannelClosed: TopologyError,  # precondition failed, access refused, locked
    **_CONNECTION,
    amqp.AMQPError: TopologyError,
    pamqp.exceptions.PAMQPException: TopologyError,
    RuntimeError: ConnectionFailedError,
}

_CONSUME: ExceptionMapping = {
    **_CONNECTION,
    amqp.AMQPError: ConsumeError,
    pamqp.exceptions.PAMQPException: ConsumeError,
    RuntimeError: ConsumeError,
}

_SETTLE: ExceptionMapping = {
    Exception: SettlementError,
}


@contextlib.contextmanager
def connecting(where: str) -> Iterator[None]:
    with map_exceptions(_CONNECT, context=f"cannot connect to RabbitMQ at {where}"):
        yield


class _OnError:
    """A boundary that costs nothing on the hot path: only an exception passing through it
    enters the (generator-based) mapping."""

    __slots__ = ("_arg", "_mapping")

    def __init__(self, mapping: Callable[[str], AbstractContextManager[None]], arg: str) -> None:
        self._mapping = mapping
        self._arg = arg

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception):
            with self._mapping(self._arg):
                raise exc


def publishing(topic: str) -> AbstractContextManager[None]:
    """Publish errors; an unroutable (returned) message gets the explanation it deserves."""
    return _OnError(_publishing, topic)


def settling(what: str) -> AbstractContextManager[None]:
    """Any failure to settle: the broker keeps (and will redeliver) the message."""
    return _OnError(_settling, what)


@contextlib.contextmanager
def _publishing(topic: str) -> Iterator[None]:
    try:
        with map_exceptions(_PUBLISH, context=f"publish to {topic!r}"):
            yield
    except PublishError as exc:
        if isinstance(exc.__cause__, amqp.PublishError):
            raise PublishError(
                f"message to {topic!r} is unroutable: no queue is bound to its exchange "
                f"({exc.__cause__}); start a consumer group first or provision the topic "
                "with TopicSpec(groups=...) so group queues exist before publishing"
            ) from exc.__cause__
        if isinstance(exc.__cause__, amqp.DeliveryError):
            raise PublishError(
                f"RabbitMQ refused the message to {topic!r} ({exc.__cause__}): a queue bound "
                "to it is full (overflow=reject-publish) or could not store it"
            ) from exc.__cause__
        raise
    except TopicNotFoundError as exc:
        raise TopicNotFoundError(
            f"topic {topic!r} does not exist (no exchange of that name); provision it or "
            "connect with auto_create=true"
        ) from exc.__cause__


@contextlib.contextmanager
def topology(what: str) -> Iterator[None]:
    with map_exceptions(_TOPOLOGY, context=what):
        yield


@contextlib.contextmanager
def consuming(what: str) -> Iterator[None]:
    with map_exceptions(_CONSUME, context=what):
        yield


@contextlib.contextmanager
def _settling(what: str) -> Iterator[None]:
    with map_exceptions(_SETTLE, context=f"{what} failed; the message will be redelivered"):
        yield
