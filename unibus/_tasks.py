"""Stopping background tasks without hanging on one that does not stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["STOP_GRACE", "cancel_and_wait"]

log = logging.getLogger("unibus")

#: How long :func:`cancel_and_wait` waits for cancelled tasks to end (seconds).
STOP_GRACE = 10.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], what: str,
                          grace: float | None = None) -> None:
    """Cancel ``tasks`` and wait until they end, at most ``grace`` seconds
    (:data:`STOP_GRACE` by default).

    A task that swallows its cancellation (a handler catching ``CancelledError``, or an
    ``asyncio.wait_for`` that drops one, as Python 3.11's can) would otherwise hold whoever
    stops it forever; it is left running, and a warning names it.
    """
    tasks = list(tasks)  # the finished ones too: their exceptions are retrieved below
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    grace = STOP_GRACE if grace is None else grace
    ended, running = await asyncio.wait(tasks, timeout=grace)
    for task in ended:  # their outcome was theirs to report; retrieved, so asyncio stays quiet
        if not task.cancelled():
            task.exception()
    if running:
        log.warning("%s: %d task(s) still running %g s after being cancelled, left "
                    "running: %s", what, len(running), grace,
                    ", ".join(sorted(task.get_name() for task in running)))
