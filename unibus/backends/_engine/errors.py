"""The one place sqlite3 exceptions become unibus errors."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from unibus.errors import ClosedError, OperationTimeoutError, UnibusError, map_exceptions

__all__ = ["boundary"]


class _Locked(Exception):
    """Another process held the write lock for longer than ``busy_timeout``."""


@contextlib.contextmanager
def boundary(error: type[UnibusError]) -> Iterator[None]:
    """Translate sqlite3 errors: a held lock is a timeout, a closed store ClosedError,
    anything else ``error`` (PublishError, ConsumeError, SettlementError, ...)."""
    with map_exceptions(
        {_Locked: OperationTimeoutError, sqlite3.ProgrammingError: ClosedError,
         sqlite3.Error: error},
        context="sqlite",
    ):
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise _Locked(
                    f"{text} (another process held the database; raise busy_timeout)"
                ) from exc
            raise
