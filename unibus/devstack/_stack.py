"""DevStack: start, watch and stop the brokers (and the stores the reliability layer can keep
its state in: Redis, PostgreSQL) as local processes under one state directory.

State layout: ``<home>/<broker>/`` holds the broker's data and config, ``<home>/<broker>.pid``
its PID (the leader of its own process group) and ``<home>/<broker>.log`` its output. Jars are
cached in ``<home>/../jars`` and reused between runs. Starting, stopping and restarting a broker
hold ``<home>/<broker>.lock``: two launchers on one home (two terminals, or a test and a
benchmark) take turns, so the second finds the first one's broker running instead of starting
another on the same ports and data.

Ports are fixed (the compose stacks publish the same ones); a second stack, e.g. in a test that
must not disturb the shared brokers, overrides some with ``ports=`` or ``UNIBUS_DEV_PORTS``
(``nats.client=14222,nats.monitor=18222``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from unibus.devstack import _process
from unibus.devstack._errors import DevStackError
from unibus.devstack._spec import BrokerSpec
from unibus.devstack.brokers import ALIASES, ORDER, spec

__all__ = ["BrokerStatus", "DevStack", "default_home"]


def default_home() -> Path:
    configured = os.environ.get("UNIBUS_DEV_HOME")
    return Path(configured) if configured else Path.home() / ".cache" / "unibus" / "dev"


def ports_from_env(value: str) -> dict[str, dict[str, int]]:
    """Parse ``UNIBUS_DEV_PORTS`` (``broker.port=number,...``) into per-broker overrides."""
    found: dict[str, dict[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, _, number = item.partition("=")
        broker, _, port = key.strip().partition(".")
        if not (broker and port and number.strip().isdigit()):
            raise DevStackError(f"UNIBUS_DEV_PORTS: expected broker.port=number, got {item!r}")
        found.setdefault(broker, {})[port] = int(number)
    return found


@dataclasses.dataclass(frozen=True)
class BrokerStatus:
    name: str
    state: str  # running | stopped | unhealthy | external
    pid: int | None
    url: str
    version: str
    log: Path
    ports: dict[str, int]
    started_in: float | None = None
    kind: str = "broker"  # broker | store


class DevStack:
    """Synchronous and blocking: call from a thread in async code.

    ``ports`` overrides default ports per broker (``{"nats": {"client": 14222}}``); without it
    ``UNIBUS_DEV_PORTS`` is read. Jars are cached next to the default home whatever the state
    dir, so a second stack does not download them again.
    """

    def __init__(self, state_dir: Path | None = None, *,
                 ports: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.home = state_dir or default_home()
        self.cache = default_home().parent / "jars"
        self.ports = dict(ports) if ports is not None else ports_from_env(
            os.environ.get("UNIBUS_DEV_PORTS", ""))
        for name in self.ports:  # refuse unknown brokers and port names early
            if name not in ORDER:
                raise DevStackError(f"port override for unknown broker {name!r}")
            self.spec(name)

    def spec(self, name: str) -> BrokerSpec:
        """The broker's spec with this stack's port overrides."""
        try:
            return spec(name, self.ports.get(name))
        except ValueError as exc:
            raise DevStackError(str(exc)) from exc

    # -- queries ----------------------------------------------------------------------------

    def names(self, names: Sequence[str] = ()) -> list[str]:
        """Names in start order; ``sqs`` stands for both SQS-compatible servers, ``brokers``
        and ``stores`` for all of a kind."""
        wanted = {alias for n in names for alias in ALIASES.get(n, (n,))}
        unknown = sorted(wanted - set(ORDER))
        if unknown:
            raise DevStackError(
                f"unknown broker(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}"
                f" (or {', '.join(ALIASES)})")
        return [n for n in ORDER if not names or n in wanted]

    def status(self, names: Sequence[str] = ()) -> list[BrokerStatus]:
        return [self._status(name) for name in self.names(names)]

    def _status(self, name: str, started_in: float | None = None) -> BrokerStatus:
        broker = self.spec(name)
        pid = self._pid(name)
        healthy = broker.ready()
        if _process.alive(pid):
            state = "running" if healthy else "unhealthy"
        else:
            pid = None
            state = "external" if healthy else "stopped"
        return BrokerStatus(name, state, pid, broker.url, broker.version,
                            self.home / f"{name}.log", broker.ports, started_in, broker.kind)

    def logs(self, name: str, lines: int = 50) -> str:
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- lifecycle --------------------------------------------------------------------------

    def up(self, names: Sequence[str] = ()) -> list[BrokerStatus]:
        """Start every named broker that is not running; wait until each answers."""
        return [self.start(name) for name in self.names(names)]

    def start(self, name: str) -> BrokerStatus:
        with self._locked(name):
            return self._start(name)

    def _start(self, name: str) -> BrokerStatus:
        current = self._status(name)
        if current.state in ("running", "external"):
            return current
        if current.state == "unhealthy":
            self._stop(name)
        broker = self.spec(name)
        busy = [p for p in broker.ports.values() if _process.port_open(p)]
        if busy:
            raise DevStackError(
                f"{name}: port(s) {busy} are taken by another process that does not answer as "
                f"{name}; stop it and retry")
        self.home.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        launch = broker.prepare(self.home / name, self.cache)
        log = self.home / f"{name}.log"
        with log.open("a") as out:
            out.write(f"\n--- unibus dev: starting {name} at {time.ctime()} ---\n")
        pid = _process.spawn(launch.argv, log=log, cwd=launch.cwd, env=launch.env)
        (self.home / f"{name}.pid").write_text(f"{pid} {_process.started_at(pid)}")
        # From the spawn, not from `began`: installing a package or resolving jars in
        # `prepare` can take longer than the broker itself needs to answer.
        deadline = time.monotonic() + broker.start_timeout
        state = self.home / name
        while not broker.ready() or (broker.settled is not None and not broker.settled(state)):
            if not _process.alive(pid):
                self._forget(name)
                raise DevStackError(f"{name} exited while starting; log tail:\n"
                                    f"{self.logs(name, 40)}")
            if time.monotonic() > deadline:
                self._stop(name, kill=True)
                raise DevStackError(f"{name} did not answer within {broker.start_timeout:.0f}s;"
                                    f" log tail:\n{self.logs(name, 40)}")
            time.sleep(0.25)
        return self._status(name, started_in=time.monotonic() - began)

    def stop(self, name: str, *, kill: bool = False) -> None:
        """Stop the broker this launcher started (SIGTERM, or SIGKILL when ``kill``)."""
        with self._locked(name):
            self._stop(name, kill=kill)

    def _stop(self, name: str, *, kill: bool = False) -> None:
        broker = self.spec(name)
        pid = self._pid(name)
        if pid is not None:
            _process.terminate(pid, kill=kill, stop_signal=broker.stop_signal)
        self._forget(name)
        if broker.after_stop is not None:
            broker.after_stop(self.home / name)
        deadline = time.monotonic() + 30
        while any(_process.port_open(p) for p in broker.ports.values()):
            if time.monotonic() > deadline or pid is None:
                break
            time.sleep(0.1)

    def down(self, names: Sequence[str] = ()) -> None:
        for name in reversed(self.names(names)):
            self.stop(name)

    def restart(self, name: str, *, kill: bool = False) -> BrokerStatus:
        """Stop (gracefully, or SIGKILL) and start again keeping data; wait until healthy."""
        with self._locked(name):
            if self._pid(name) is None:
                raise DevStackError(
                    f"{name} was not started by this launcher; cannot restart it")
            self._stop(name, kill=kill)
            return self._start(name)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Hold ``<home>/<name>.lock``; the public lifecycle methods take it once and call
        only the unlocked ``_start`` / ``_stop`` inside (a second flock would wait forever)."""
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another launcher's start can take minutes
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- pid files --------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        path = self.home / f"{name}.pid"
        try:
            pid_text, _, started = path.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        # After a reboot or a long time the PID may belong to another process: the start
        # time recorded with it tells them apart, so we never signal a stranger.
        if not _process.alive(pid) or (started and started != _process.started_at(pid)):
            return None
        return pid

    def _forget(self, name: str) -> None:
        (self.home / f"{name}.pid").unlink(missing_ok=True)
