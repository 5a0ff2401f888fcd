"""Options of the embedded engine (``sqlite://`` and ``memory://``)."""

from __future__ import annotations

from typing import Literal

import pydantic

from unibus.options import BackendOptions

__all__ = ["EmbeddedOptions"]


class EmbeddedOptions(BackendOptions):
    """Options from the URL query string or :func:`unibus.connect` keywords."""

    lease_timeout: float = pydantic.Field(
        default=30.0, gt=0,
        description="seconds after which a dead consumer's unsettled messages are redelivered",
    )
    poll_interval: float = pydantic.Field(
        default=0.1, gt=0, le=60,
        description="longest pause between polls for messages from other processes",
    )
    dedup_window: float = pydantic.Field(
        default=120.0, ge=0,
        description="seconds a message id is remembered for deduplication (0: off)",
    )
    max_message_size: int = pydantic.Field(
        default=1 << 20, gt=0, le=1 << 30, description="largest accepted message, in bytes"
    )
    busy_timeout: float = pydantic.Field(
        default=30.0, gt=0,
        description="seconds to wait for another process holding the write lock",
    )
    prune_interval: float = pydantic.Field(
        default=60.0, gt=0, description="seconds between retention pruning passes"
    )
    synchronous: Literal["normal", "full"] = pydantic.Field(
        default="normal",
        description="'normal' survives process crashes, 'full' also power loss (slower)",
    )
