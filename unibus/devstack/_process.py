"""Start, find and stop broker processes by PID and process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["alive", "port_open", "spawn", "terminate"]


def spawn(argv: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` detached, in a new session (its own process group), output to ``log``.

    The broker is started through ``sh -c 'setsid ... &'`` so it is not a child of this
    process: it outlives the command that started it and leaves no unreaped child behind.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    script = 'setsid "$@" >>"$UNIBUS_DEV_LOG" 2>&1 </dev/null & echo $!'
    result = subprocess.run(
        ["/bin/sh", "-c", script, "sh", *argv], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **env, "UNIBUS_DEV_LOG": str(log)}, check=True,
    )
    return int(result.stdout.strip())


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead; reap it.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def started_at(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def terminate(pid: int, *, kill: bool = False, timeout: float = 60.0,
              stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """Stop the process group led by ``pid``: ``stop_signal`` (or SIGKILL), then SIGKILL
    stragglers."""
    sig = signal.SIGKILL if kill else stop_signal
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + (5.0 if kill else timeout)
    while time.monotonic() < deadline:
        if not alive(pid) and not group_members(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (alive(pid) or group_members(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
