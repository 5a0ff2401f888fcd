"""Core NATS mode: plain subjects, queue groups, at most once, nothing kept.

A group is a NATS queue group (each message to one member), ungrouped consumers are plain
subscriptions (each gets every message). There is no acknowledgement: ``ack`` is a no-op,
``nack`` and ``dead_letter`` are refused, and whatever is buffered at close is dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from unibus.base import BaseConsumer, BaseDelivery
from unibus.capabilities import Capabilities
from unibus.errors import CapabilityError, InvalidMessageError
from unibus.message import Message
from unibus_nats import _names
from unibus_nats._errors import boundary
from unibus_nats._wire import from_nats

__all__ = ["CoreConsumer"]


class CoreConsumer(BaseConsumer):
    backend_name = "nats"

    def __init__(
        self, topics: Sequence[str], group: str | None, *, capabilities: Capabilities,
        prefetch: int, nc: Client,
    ) -> None:
        super().__init__(topics, group, capabilities=capabilities, prefetch=prefetch)
        self.nc = nc
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        with boundary("consume", f"subscribing to {', '.join(self.topics)}"):
            for topic in self.topics:
                subject = _names.subject(topic)

                async def on_message(msg: Msg, topic: str = topic) -> None:
                    try:
                        message = from_nats(msg.data, msg.headers)
                    except InvalidMessageError:
                        message = Message(body=msg.data)
                    self._push(BaseDelivery(self, message, topic=topic, attempt=1))

                self._subs.append(await self.nc.subscribe(
                    subject, queue=self.group or "", cb=on_message))
            await self.nc.flush()  # the server knows the subscriptions before we return

    def _refuse(self, what: str) -> CapabilityError:
        return CapabilityError(what, self.capabilities.reason("dead_letter"), backend="nats")

    async def _ack(self, delivery: BaseDelivery) -> None:
        """Nothing to tell the server: core NATS forgot the message when it sent it."""

    async def _nack(self, delivery: BaseDelivery, delay: float) -> None:
        raise self._refuse("nack (redelivery)")

    async def _dead_letter(self, delivery: BaseDelivery, reason: str) -> None:
        raise self._refuse("dead_letter")

    async def _stop_fetching(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
