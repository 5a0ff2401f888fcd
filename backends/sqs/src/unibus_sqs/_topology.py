"""Queues, SNS topics, subscriptions and redrive policies, created idempotently.

Queue mode: a topic is one queue (plus ``-dlq``). SNS mode: a topic is an SNS topic and each
group a queue subscribed to it with raw message delivery (plus its ``-dlq``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from unibus.errors import CapabilityError, ConfigError, TopicNotFoundError, TopologyError
from unibus_sqs._client import Clients
from unibus_sqs._errors import QueueGone, boundary, error_code
from unibus_sqs._names import Names
from unibus_sqs._options import SQSOptions

__all__ = ["GROUP_TAG", "Topology"]

GROUP_TAG = "unibus-group"
_DLQ_RETENTION = str(14 * 24 * 3600)
_EXISTS = frozenset({"QueueAlreadyExists", "QueueNameExists",
                     "AWS.SimpleQueueService.QueueNameExists"})


class Topology:
    def __init__(self, clients: Clients, options: SQSOptions) -> None:
        self.clients = clients
        self.options = options
        self.names = Names(options.queue_prefix, options.fifo)
        self._urls: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        self._topics: dict[str, str] = {}
        self._lock = asyncio.Lock()

    @property
    def sns_mode(self) -> bool:
        return self.options.group_mode == "sns"

    def attributes(self, *, dead_letter: bool = False) -> dict[str, str]:
        attrs = {"VisibilityTimeout": str(self.options.visibility_timeout)}
        if dead_letter:
            attrs["MessageRetentionPeriod"] = _DLQ_RETENTION
        if self.options.fifo:
            attrs["FifoQueue"] = "true"
            attrs["ContentBasedDeduplication"] = "false"
        return attrs

    def forget(self, url_or_name: str | None = None) -> None:
        """Drop cached URLs and ARNs (after the broker lost them, e.g. a restart)."""
        self._urls.clear()
        self._arns.clear()
        self._topics.clear()

    # -- queues ---------------------------------------------------------------------------

    async def queue_url(
        self, name: str, *, create: bool, topic: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> str:
        url = self._urls.get(name)
        if url is not None:
            return url
        sqs = self.clients.sqs
        if create:
            with boundary(f"creating queue {name}", default=TopologyError, topic=topic):
                try:
                    reply = await sqs.create_queue(QueueName=name,
                                                   Attributes=attributes or self.attributes())
                except Exception as exc:
                    if error_code(exc) not in _EXISTS:
                        raise
                    reply = await sqs.get_queue_url(QueueName=name)
        else:
            try:
                with boundary(f"looking up queue {name}", default=TopologyError, topic=topic):
                    reply = await sqs.get_queue_url(QueueName=name)
            except QueueGone as exc:
                raise TopicNotFoundError(
                    f"topic {topic or name!r} does not exist (queue {name}); create it with "
                    "bus.provision() or connect with auto_create=true") from exc
        url = str(reply["QueueUrl"])
        self._urls[name] = url
        return url

    async def queue_arn(self, url: str) -> str:
        arn = self._arns.get(url)
        if arn is None:
            with boundary("reading queue attributes", default=TopologyError):
                reply = await self.clients.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn"])
            arn = self._arns[url] = str(reply["Attributes"]["QueueArn"])
        return arn

    async def set_attributes(self, url: str, attributes: dict[str, str]) -> None:
        with boundary("setting queue attributes", default=TopologyError):
            await self.clients.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)

    async def dead_letter_url(self, topic: str, group: str | None, *, create: bool) -> str:
        name = self.names.dead_letter_queue(topic, None if not self.sns_mode else group)
        return await self.queue_url(name, create=create, topic=topic,
                                    attributes=self.attributes(dead_letter=True))

    async def redrive(self, url: str, dlq_url: str, max_attempts: int | None) -> None:
        """Native redrive: SQS moves a message received more than ``max_attempts`` times."""
        if max_attempts is None:
            return
        policy = {"deadLetterTargetArn": await self.queue_arn(dlq_url),
                  "maxReceiveCount": max_attempts}
        await self.set_attributes(url, {"RedrivePolicy": json.dumps(policy)})

    async def bind_group(self, url: str, topic: str, group: str) -> None:
        """Queue mode: a topic's queue serves one group; a second group is refused."""
        sqs = self.clients.sqs
        with boundary("reading queue tags", default=TopologyError, topic=topic):
            tags = (await sqs.list_queue_tags(QueueUrl=url)).get("Tags") or {}
        bound = tags.get(GROUP_TAG)
        if bound is None:
            with boundary("tagging queue", default=TopologyError, topic=topic):
                await sqs.tag_queue(QueueUrl=url, Tags={GROUP_TAG: group})
        elif bound != group:
            raise CapabilityError(
                f"consumer group {group!r} on topic {topic!r} (already consumed by group "
                f"{bound!r})",
                "without SNS a topic is one SQS queue serving one consumer group; set "
                "groups=sns with an SNS endpoint for several groups", backend="sqs")

    async def delete_queue(self, url: str) -> None:
        try:
            with boundary("deleting queue", default=TopologyError):
                await self.clients.sqs.delete_queue(QueueUrl=url)
        except QueueGone:
            pass
        for name in [n for n, u in self._urls.items() if u == url]:
            del self._urls[name]

    # -- SNS ------------------------------------------------------------------------------

    async def topic_arn(self, topic: str, *, create: bool) -> str:
        arn = self._topics.get(topic)
        if arn is not None:
            return arn
        name = self.names.sns_topic(topic)
        sns = self.clients.sns
        if create:
            attrs = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} \
                if self.options.fifo else {}
            with boundary(f"creating SNS topic {name}", default=TopologyError, topic=topic):
                arn = str((await sns.create_topic(Name=name, Attributes=attrs))["TopicArn"])
        else:
            arn = await self._find_topic(name, topic)
        self._topics[topic] = arn
        return arn

    async def _find_topic(self, name: str, topic: str) -> str:
        with boundary("listing SNS topics", default=TopologyError, topic=topic):
            paginator = self.clients.sns.get_paginator("list_topics")
            async for page in paginator.paginate():
                for entry in page.get("Topics", []):
                    arn = str(entry["TopicArn"])
                    if arn.rsplit(":", 1)[-1] == name:
                        return arn
        raise TopicNotFoundError(
            f"topic {topic!r} does not exist (SNS topic {name}); create it with "
            "bus.provision() or connect with auto_create=true")

    async def subscribe(self, topic_arn: str, queue_url: str) -> str:
        """Subscribe the queue to the SNS topic, raw delivery; returns the subscription ARN."""
        queue_arn = await self.queue_arn(queue_url)
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]}
        await self.set_attributes(queue_url, {"Policy": json.dumps(policy)})
        with boundary("subscribing a queue to SNS", default=TopologyError):
            reply = await self.clients.sns.subscribe(
                TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True)
        return str(reply["SubscriptionArn"])

    async def unsubscribe(self, subscription_arn: str) -> None:
        try:
            with boundary("unsubscribing", default=TopologyError):
                await self.clients.sns.unsubscribe(SubscriptionArn=subscription_arn)
        except QueueGone:
            pass

    # -- teardown -------------------------------------------------------------------------

    async def delete_topic(self, topic: str) -> None:
        names = self.names
        prefix = names.topic_queue(topic).removesuffix(".fifo")[:60]
        with boundary("listing queues", default=TopologyError, topic=topic):
            reply = await self.clients.sqs.list_queues(QueueNamePrefix=prefix,
                                                       MaxResults=1000)
        for url in reply.get("QueueUrls", []) or []:
            if names.belongs_to(url.rsplit("/", 1)[-1], topic):
                await self.delete_queue(url)
        if self.sns_mode:
            try:
                arn = await self.topic_arn(topic, create=False)
            except TopicNotFoundError:
                arn = None
            if arn is not None:
                try:
                    with boundary("deleting SNS topic", default=TopologyError, topic=topic):
                        await self._drop_subscriptions(arn)
                        await self.clients.sns.delete_topic(TopicArn=arn)
                except QueueGone:
                    pass
        self._topics.pop(topic, None)

    async def _drop_subscriptions(self, arn: str) -> None:
        paginator = self.clients.sns.get_paginator("list_subscriptions_by_topic")
        async for page in paginator.paginate(TopicArn=arn):
            for sub in page.get("Subscriptions", []):
                if str(sub.get("SubscriptionArn", "")).startswith("arn:"):
                    await self.clients.sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])

    def check_spec_options(self, options: dict[str, Any]) -> None:
        if options:
            raise ConfigError(
                f"unknown SQS topic options {sorted(options)}; SQS topics take none")
