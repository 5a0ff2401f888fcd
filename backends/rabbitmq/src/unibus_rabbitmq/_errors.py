"""The one boundary where aio-pika / aiormq exceptions become unibus errors.

Every broker call of this backend runs inside one of the context managers below; no client
exception type reaches the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


@contextlib.contextmanager
def publishing(topic: str) -> Iterator[None]:
    """Publish errors; an unroutable (returned) message gets the explanation it deserves."""
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
def settling(what: str) -> Iterator[None]:
    """Any failure to settle: the broker keeps (and will redeliver) the message."""
    with map_exceptions(_SETTLE, context=f"{what} failed; the message will be redelivered"):
        yield
