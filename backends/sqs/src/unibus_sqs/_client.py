"""The AWS clients one backend shares: an SQS client and, in SNS mode, an SNS client."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import aioboto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]

from unibus.errors import ConfigError
from unibus_sqs._errors import boundary
from unibus_sqs._options import SQSOptions, is_local_endpoint

__all__ = ["Clients"]

# Dummy credentials for a server on this machine when nothing else is configured: ElasticMQ
# and moto accept any key. Never used for a remote endpoint.
_LOCAL_KEY = "unibus-local"


class Clients:
    """Open clients on :meth:`open`, close them on :meth:`close`; both idempotent."""

    def __init__(self, options: SQSOptions) -> None:
        self.options = options
        self.sqs: Any = None
        self.sns: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    def _session(self) -> aioboto3.Session:
        o = self.options
        keys: dict[str, Any] = {}
        if o.aws_access_key_id is not None and o.aws_secret_access_key is not None:
            keys = {
                "aws_access_key_id": o.aws_access_key_id,
                "aws_secret_access_key": o.aws_secret_access_key.get_secret_value(),
                "aws_session_token": (o.aws_session_token.get_secret_value()
                                      if o.aws_session_token else None),
            }
        elif (o.profile is None and is_local_endpoint(o.endpoint_url)
              and not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE")):
            keys = {"aws_access_key_id": _LOCAL_KEY, "aws_secret_access_key": _LOCAL_KEY}
        return aioboto3.Session(region_name=o.region, profile_name=o.profile, **keys)

    def _config(self) -> AioConfig:
        o = self.options
        return AioConfig(
            connect_timeout=o.connect_timeout,
            read_timeout=max(o.wait_time + 10, 30),
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=64,
            # unibus builds every request itself (the codec checks names, sizes and text);
            # botocore's check walks each entry's attributes again, a third of a batch send.
            parameter_validation=False,
        )

    async def open(self) -> None:
        if self._stack is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            with boundary("opening the AWS clients", default=ConfigError):
                session = self._session()
                self.sqs = await stack.enter_async_context(session.client(
                    "sqs", endpoint_url=self.options.endpoint_url, config=self._config()))
                if self.options.group_mode == "sns":
                    self.sns = await stack.enter_async_context(session.client(
                        "sns", endpoint_url=self.options.sns_url, config=self._config()))
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()
        self.sqs = self.sns = None
