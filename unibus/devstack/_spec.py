"""What the launcher needs to know about one broker."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from pathlib import Path

__all__ = ["BrokerSpec", "Launch"]


@dataclasses.dataclass(frozen=True)
class Launch:
    """How to start the broker process (already prepared: jars resolved, config written)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclasses.dataclass(frozen=True)
class BrokerSpec:
    name: str
    version: str
    ports: dict[str, int]
    url: str
    #: Resolve/install what is missing, write config under the state dir, return the launch.
    prepare: Callable[[Path, Path], Launch]
    #: Protocol-level readiness probe.
    ready: Callable[[], bool]
    #: After ``ready``, at start only: has the broker finished restoring its state (given its
    #: state dir)? For a broker that answers before it has recreated what it persisted.
    settled: Callable[[Path], bool] | None = None
    start_timeout: float = 90.0
    #: Extra cleanup after the process group is gone (e.g. Erlang's epmd).
    after_stop: Callable[[Path], None] | None = None
    #: ``broker`` or ``store`` (a database the reliability layer keeps its state in).
    kind: str = "broker"
    #: The signal that asks for a prompt clean shutdown (PostgreSQL: SIGINT, "fast").
    stop_signal: signal.Signals = signal.SIGTERM
