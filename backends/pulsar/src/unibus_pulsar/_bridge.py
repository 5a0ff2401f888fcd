"""Callbacks of pulsar-client's C++ threads, turned into awaitables on the event loop.

The client's asyncio API (``pulsar.asyncio``) covers producing, receiving, acking and
readers; the few calls it lacks or restricts (seek to ``MessageId.earliest``, redelivery) go
through :func:`call`, which hands the client a callback that completes a future with
``loop.call_soon_threadsafe``: the loop never waits on a client thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import _pulsar  # type: ignore[import-not-found]
import pulsar.asyncio as pulsar_asyncio  # type: ignore[import-untyped]

__all__ = ["call"]


async def call(start: Callable[[Callable[..., None]], None]) -> Any:
    """Run ``start(callback)`` and wait for the client to call ``callback(result[, value])``.

    Raises ``pulsar.asyncio.PulsarException`` for a result other than Ok (mapped at the
    boundary like every other client error).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def complete(result: Any, value: Any = None) -> None:
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
