"""Fixtures and helpers shared by the contract suite's test classes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

import unibus
from unibus.capabilities import Capabilities
from unibus.errors import OperationTimeoutError, UnibusError
from unibus.protocols import Consumer, Delivery

__all__ = ["ContractBase"]


class ContractBase:
    """What a backend's test class sets, and the fixtures every contract test uses.

    Subclass :class:`unibus.testing.ContractSuite`, name the class ``Test...`` and set
    ``url`` (``{tmp}`` is replaced by a per-test temporary directory), ``options`` and, for a
    broker the native launcher runs, ``broker`` (its ``unibus dev`` name) so the reconnect
    test can restart it.
    """

    url: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    broker: ClassVar[str | None] = None
    #: Longest wait for a message that must arrive (generous: CI machines are slow).
    timeout: ClassVar[float] = 20.0
    #: How long "nothing more arrives" is watched for.
    quiet_period: ClassVar[float] = 1.5
    #: Longest wait for a redelivery after a consumer closed without settling.
    redelivery_timeout: ClassVar[float] = 60.0

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def bus_url(self, tmp_path: Path) -> str:
        if not self.url:
            pytest.fail(f"{type(self).__name__} must set `url` to run the contract suite")
        return self.url.replace("{tmp}", str(tmp_path))

    @pytest_asyncio.fixture
    async def bus(self, bus_url: str) -> AsyncIterator[unibus.Bus]:
        async with self.open_bus(bus_url) as bus:
            yield bus

    @pytest.fixture
    def topic(self, request: pytest.FixtureRequest) -> str:
        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
        name = name.removeprefix("test-")[:24].strip("-")
        return f"ct-{name}-{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def caps(self, bus: unibus.Bus) -> Capabilities:
        return bus.capabilities

    # -- helpers ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_bus(self, url: str, **options: Any) -> AsyncIterator[unibus.Bus]:
        bus = unibus.connect(url, **{**self.options, **options})
        await bus.open()
        try:
            yield bus
        finally:
            await bus.close()

    async def restart_broker(self) -> None:
        """Stop the broker (keeping its data) and start it again; wait until it answers."""
        if self.broker is None:
            return
        from unibus.devstack import DevStack

        stack = DevStack()
        # The launcher's stack comes from UNIBUS_DEV_HOME / UNIBUS_DEV_PORTS; the suite's
        # broker from its URL. Restart only if they are the same broker, never another one.
        ports = set(stack.spec(self.broker).ports.values())
        named = {int(port) for port in re.findall(r":(\d+)", self.url)}
        if named and not named & ports:
            pytest.fail(
                f"the suite's URL {self.url} is not the launcher's {self.broker} (ports "
                f"{sorted(ports)} under {stack.home}): set UNIBUS_DEV_HOME and "
                "UNIBUS_DEV_PORTS for the stack the tests use")
        await asyncio.to_thread(stack.restart, self.broker)

    async def collect(
        self,
        consumer: Consumer,
        count: int,
        *,
        settle: str | None = "ack",
        timeout: float | None = None,
    ) -> list[Delivery]:
        """Receive ``count`` deliveries, settling each (``ack``/``nack``/None to leave it)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        got: list[Delivery] = []
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"received {len(got)} of {count} messages within {timeout or self.timeout}s"
                )
            try:
                batch = await consumer.receive_batch(count - len(got), timeout=remaining)
            except OperationTimeoutError:
                continue
            for delivery in batch:
                if settle == "ack":
                    await delivery.ack()
                elif settle == "nack":
                    await delivery.nack()
            got.extend(batch)
        return got

    async def assert_quiet(self, consumer: Consumer, period: float | None = None) -> None:
        """Nothing (more) arrives within ``period``."""
        with contextlib.suppress(OperationTimeoutError):
            extra = await consumer.receive(timeout=period or self.quiet_period)
            await extra.ack()
            pytest.fail(f"unexpected delivery {extra!r}")

    async def eventually(
        self, probe: Callable[[], Any], *, timeout: float | None = None, what: str = ""
    ) -> Any:
        """Poll the coroutine function ``probe`` until it returns a truthy value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        delay = 0.05
        while True:
            result = await probe()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what or probe}")
            await asyncio.sleep(delay)  # polling interval, not synchronisation
            delay = min(delay * 2, 0.5)

    async def publish_retrying(
        self, bus: unibus.Bus, topic: str, message: unibus.Message, timeout: float = 60.0
    ) -> unibus.Receipt:
        """Publish, retrying typed transient errors while the broker comes back."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await bus.publish(topic, message)
            except (unibus.ConnectionFailedError, unibus.OperationTimeoutError,
                    unibus.PublishError) as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"producer did not recover: {exc!r}") from exc
                await asyncio.sleep(0.5)  # back off while the broker restarts

    @staticmethod
    def ids(deliveries: list[Delivery]) -> list[str]:
        return [d.message.id for d in deliveries]

    @staticmethod
    def is_unibus_error(exc: BaseException) -> bool:
        return isinstance(exc, UnibusError)
