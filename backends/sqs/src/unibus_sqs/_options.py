"""SQS backend options: region, endpoints, FIFO mode, naming and how groups are built."""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import Literal

import pydantic

from unibus.options import BackendOptions

__all__ = ["SQSOptions", "is_local_endpoint"]


def is_local_endpoint(url: str | None) -> bool:
    """True for an endpoint on this machine (ElasticMQ, moto): dummy credentials are fine."""
    if not url:
        return False
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SQSOptions(BackendOptions):
    """Options for ``sqs://[region]`` (and ``sqs+fifo://[region]``, meaning ``fifo=true``).

    ``groups`` picks how consumer groups are built: ``sns`` gives each group its own SQS
    queue subscribed to an SNS topic (fan-out; the default against AWS or when
    ``sns_endpoint_url`` is set); ``queue`` makes a topic one SQS queue that the consumers of
    one group share (for servers without SNS such as ElasticMQ; the default with a custom
    ``endpoint_url``). Credentials come from the usual AWS chain; against a local endpoint
    with nothing configured, dummy ones are used.
    """

    region: str = pydantic.Field(default="us-east-1", min_length=1)
    endpoint_url: str | None = pydantic.Field(default=None, description="SQS endpoint URL")
    sns_endpoint_url: str | None = pydantic.Field(
        default=None, description="SNS endpoint URL (default: endpoint_url)"
    )
    groups: Literal["sns", "queue"] | None = None
    fifo: bool = False
    queue_prefix: str = pydantic.Field(default="", pattern=r"^[A-Za-z0-9_-]{0,40}$")
    wait_time: int = pydantic.Field(
        default=10, ge=0, le=20,
        description="long-poll seconds; closing a consumer waits for its polls to end")
    receive_concurrency: int = pydantic.Field(
        default=1, ge=1, le=32, description="ReceiveMessage calls in flight per queue")
    visibility_timeout: int = pydantic.Field(default=30, ge=2, le=43200)
    profile: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: pydantic.SecretStr | None = None
    aws_session_token: pydantic.SecretStr | None = None

    @pydantic.field_validator("endpoint_url", "sns_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected an http(s) URL such as http://127.0.0.1:9324, got {value!r}")
        return value.rstrip("/")

    @pydantic.model_validator(mode="after")
    def _keys_come_in_pairs(self) -> SQSOptions:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("give aws_access_key_id and aws_secret_access_key together")
        return self

    @property
    def group_mode(self) -> Literal["sns", "queue"]:
        if self.groups is not None:
            return self.groups
        if self.endpoint_url is None or self.sns_endpoint_url is not None:
            return "sns"
        return "queue"

    @property
    def sns_url(self) -> str | None:
        return self.sns_endpoint_url or self.endpoint_url
