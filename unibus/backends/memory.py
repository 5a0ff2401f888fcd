"""``memory://``: the embedded engine on an in-process database, for tests and examples.

Buses opened on the same ``memory://name`` URL in one process share one database (plain
``memory://`` is the name ``default``); it disappears when the last of them closes.
"""

from __future__ import annotations

import os
from typing import ClassVar

from unibus.backends._engine.backend import EmbeddedBackend

__all__ = ["MemoryBackend"]


class MemoryBackend(EmbeddedBackend):
    name: ClassVar[str] = "memory"
    distribution: ClassVar[str] = "unibus"
    durable: ClassVar[bool] = False

    def database(self) -> tuple[str, str]:
        name = (self.parts.netloc + self.parts.path).strip("/") or "default"
        return f"memory:{os.getpid()}:{name}", ":memory:"
