"""The launcher's one error type."""

from __future__ import annotations

from unibus.errors import UnibusError

__all__ = ["DevStackError"]


class DevStackError(UnibusError):
    """A broker could not be installed, started or stopped; the message carries its log tail."""
