"""The one boundary where botocore/aiohttp exceptions become unibus errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
from botocore import exceptions as bce  # type: ignore[import-untyped]

from unibus.errors import (
    ConfigError,
    ConnectionFailedError,
    ConsumeError,
    MessageTooLargeError,
    OperationTimeoutError,
    TopicNotFoundError,
    UnibusError,
    map_exceptions,
)

__all__ = ["MISSING", "QueueGone", "boundary", "error_code"]

#: Error codes meaning the queue or topic does not exist (query and JSON protocols).
MISSING = frozenset({
    "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue",
    "NotFound", "NotFoundException", "ResourceNotFoundException",
})
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled",
                        "ServiceUnavailable", "InternalError", "InternalFailure"})
_CREDENTIALS = frozenset({"InvalidClientTokenId", "UnrecognizedClientException",
                          "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
                          "AuthorizationError", "InvalidSecurity", "MissingAuthenticationToken"})
_TOO_LARGE = frozenset({"InvalidParameterValue.TooLarge", "BatchRequestTooLong",
                        "AWS.SimpleQueueService.BatchRequestTooLong"})

_TRANSPORT = {
    bce.ConnectTimeoutError: OperationTimeoutError,
    bce.ReadTimeoutError: OperationTimeoutError,
    bce.EndpointConnectionError: ConnectionFailedError,
    bce.ConnectionClosedError: ConnectionFailedError,
    bce.HTTPClientError: ConnectionFailedError,
    bce.NoCredentialsError: ConfigError,
    bce.PartialCredentialsError: ConfigError,
    bce.NoRegionError: ConfigError,
    bce.ParamValidationError: ConfigError,
    aiohttp.ClientError: ConnectionFailedError,
    TimeoutError: OperationTimeoutError,
    OSError: ConnectionFailedError,
    bce.BotoCoreError: ConsumeError,
}


class QueueGone(TopicNotFoundError):
    """The queue (or SNS topic) behind a topic does not exist (any more)."""


def error_code(exc: BaseException) -> str:
    if isinstance(exc, bce.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


@contextlib.contextmanager
def boundary(
    what: str, *, default: type[UnibusError] = ConsumeError, topic: str | None = None
) -> Iterator[None]:
    """Translate what the AWS client raises while doing ``what``.

    Server errors become ``default`` (PublishError for publishes, SettlementError for
    settlements ...) unless their code means something unibus has a type for. No secret is
    part of a botocore message, so the text is kept.
    """
    try:
        with map_exceptions(_TRANSPORT, context=what):
            yield
    except bce.ClientError as exc:
        code = error_code(exc)
        detail = exc.response.get("Error", {}).get("Message") or code
        if code in MISSING:
            name = f"topic {topic!r}" if topic is not None else "the queue"
            raise QueueGone(f"{what}: {name} does not exist on the broker ({detail})") from exc
        if code in _THROTTLED:
            raise OperationTimeoutError(f"{what}: the broker is busy ({code}: {detail})") from exc
        if code in _CREDENTIALS:
            raise ConnectionFailedError(
                f"{what}: the broker refused the credentials ({code}); check the AWS "
                "credential chain or the aws_access_key_id option") from exc
        if code in _TOO_LARGE:
            raise MessageTooLargeError(0, 0, f"sqs ({detail})") from exc
        raise default(f"{what}: {code}: {detail}") from exc
