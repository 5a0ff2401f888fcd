"""The one boundary where aiokafka exceptions become unibus errors.

Every broker call of this backend runs inside one of the context managers below; no
aiokafka exception type reaches the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiokafka.errors as ke  # type: ignore[import-untyped]

from unibus.errors import (
    ClosedError,
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

__all__ = [
    "TRANSIENT",
    "connecting",
    "consuming",
    "is_transient",
    "publishing",
    "settling",
    "topology",
]

#: Client errors a running consumer or committer rides out (the client reconnects).
TRANSIENT: tuple[type[BaseException], ...] = (
    ke.KafkaConnectionError,
    ke.NodeNotReadyError,
    ke.NoBrokersAvailable,
    ke.KafkaUnavailableError,
    ke.KafkaTimeoutError,
    ke.RequestTimedOutError,
    ke.NotCoordinatorForGroupError,
    ke.GroupCoordinatorNotAvailableError,
    ke.GroupLoadInProgressError,
    ke.LeaderNotAvailableError,
    ke.NotLeaderForPartitionError,
    ke.RebalanceInProgressError,
    ke.CommitFailedError,
    ke.IllegalStateError,
    ke.UnknownMemberIdError,
    ke.IllegalGenerationError,
    ke.StaleMetadata,
    ConnectionError,
    TimeoutError,
)

# Lost or unusable connections, in every context. Subclasses before bases.
_CONNECTION: ExceptionMapping = {
    ke.AuthenticationFailedError: ConnectionFailedError,
    ke.SaslAuthenticationFailed: ConnectionFailedError,
    ke.KafkaConnectionError: ConnectionFailedError,
    ke.NoBrokersAvailable: ConnectionFailedError,
    ke.NodeNotReadyError: ConnectionFailedError,
    ke.KafkaUnavailableError: ConnectionFailedError,
    ke.KafkaTimeoutError: OperationTimeoutError,
    ke.RequestTimedOutError: OperationTimeoutError,
    ke.ConsumerStoppedError: ClosedError,
    ke.ProducerClosed: ClosedError,
    TimeoutError: OperationTimeoutError,
    ConnectionError: ConnectionFailedError,
    OSError: ConnectionFailedError,
}

_CONNECT: ExceptionMapping = {
    TimeoutError: ConnectionFailedError,
    **_CONNECTION,
    ke.KafkaError: ConnectionFailedError,
}

_PUBLISH: ExceptionMapping = {
    ke.UnknownTopicOrPartitionError: TopicNotFoundError,
    **_CONNECTION,
    ke.KafkaError: PublishError,
}

_TOPOLOGY: ExceptionMapping = {
    ke.UnknownTopicOrPartitionError: TopicNotFoundError,
    **_CONNECTION,
    ke.KafkaError: TopologyError,
}

_CONSUME: ExceptionMapping = {
    ke.UnknownTopicOrPartitionError: TopicNotFoundError,
    **_CONNECTION,
    ke.KafkaError: ConsumeError,
}

_SETTLE: ExceptionMapping = {
    **_CONNECTION,
    ke.KafkaError: SettlementError,
}


def is_transient(exc: BaseException) -> bool:
    """A client error a retry loop may wait out."""
    return isinstance(exc, TRANSIENT)


@contextlib.contextmanager
def connecting(where: str) -> Iterator[None]:
    with map_exceptions(_CONNECT, context=f"cannot connect to Kafka at {where}"):
        yield


@contextlib.contextmanager
def publishing(topic: str) -> Iterator[None]:
    with map_exceptions(_PUBLISH, context=f"publish to {topic!r}"):
        yield


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
    """A failed settlement: the offset stays uncommitted, so the message comes again."""
    with map_exceptions(_SETTLE, context=f"{what} failed; the message will be redelivered"):
        yield
