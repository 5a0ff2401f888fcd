"""Durations as users write them: ``15m``, ``7d``, ``1h30m``, ``250ms`` or plain seconds."""

from __future__ import annotations

import math
import re

from unibus.errors import ConfigError

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``; raises ConfigError for anything else or a negative number."""
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ConfigError(
                    f"{value!r} is not a duration; write e.g. '30s', '15m', '7d' or '1h30m'"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ConfigError(f"{value!r} is not a duration")
    if seconds < 0 or math.isnan(seconds):
        raise ConfigError(f"duration {value!r} must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: ``900`` -> ``15m``, ``inf`` -> ``unlimited``."""
    if math.isinf(seconds):
        return "unlimited"
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
