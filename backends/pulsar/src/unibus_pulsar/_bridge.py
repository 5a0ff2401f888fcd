"""Every operation of pulsar-client's C++ client, awaited on the event loop.

The client completes operations on its own threads. Its asyncio module (``pulsar.asyncio``)
completes its futures there with ``loop.call_soon_threadsafe``, which raises RuntimeError
once the loop is closed (an application failed with operations pending, or never closed
its bus); raised on a client thread, that aborts the whole process ("terminate called").
So this backend does not use ``pulsar.asyncio``: it hands the client's ``*_async`` methods
the callback of :func:`call`, which cannot raise. See docs/design/pulsar-asyncio-guard.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import _pulsar  # type: ignore[import-not-found]
import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]

__all__ = ["call", "subscribe"]


async def call(start: Callable[[Callable[..., None]], None]) -> Any:
    """Run ``start(callback)`` and wait for the client to call ``callback(result[, value])``.

    Raises ``pulsar.asyncio.PulsarException`` for a result other than Ok (mapped at the
    boundary like every other client error). The callback may come after the loop closed:
    it then does nothing.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def complete(result: Any, value: Any = None) -> None:  # on a client thread
        def settle() -> None:
            if future.done():
                return
            if result == _pulsar.Result.Ok:
                future.set_result(value)
            else:
                future.set_exception(pulsar_asyncio.PulsarException(result))

        # RuntimeError: the loop closed while the client was still finishing; nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    start(complete)
    return await future


async def subscribe(client: Any, topics: str | list[str], subscription: str,
                    configuration: Any) -> Any:
    """A client consumer of ``subscription`` on one topic, or on several (one consumer per
    topic under a multi-topic consumer)."""
    if isinstance(topics, str):
        return await call(lambda done: client.subscribe_async(
            topics, subscription, configuration, done))
    return await call(lambda done: client.subscribe_async_topics(
        topics, subscription, configuration, done))
