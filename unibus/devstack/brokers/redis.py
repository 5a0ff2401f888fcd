"""Redis from the Debian package ``redis-server``: a store for the idempotent consumer."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._packages import debian_version, ensure_debian_package
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"client": 6379}


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    return BrokerSpec(name="redis", version=debian_version("redis-server"), ports=dict(ports),
                      url=f"redis://127.0.0.1:{ports['client']}/0",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.redis, ports["client"]),
                      start_timeout=30.0, kind="store")


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    binary = ensure_debian_package("redis-server", "redis-server")
    _stop_packaged_service(ports["client"])
    state.mkdir(parents=True, exist_ok=True)
    config = state / "redis.conf"
    # Written on every start so a port override or a changed default always applies.
    config.write_text(
        "bind 127.0.0.1\n"
        f"port {ports['client']}\n"
        "protected-mode yes\n"
        "daemonize no\n"
        'logfile ""\n'  # stdout, i.e. the launcher's log
        f'dir "{state}"\n'
        "appendonly yes\n"
        # Every acknowledged write is on disk first, as with a PostgreSQL commit. With
        # `everysec`, Redis postpones the write (not only the fsync) while a background fsync
        # runs, so even a crash of the process alone lost completions a test had been told of.
        "appendfsync always\n"
        'save ""\n'  # the append-only file is the persistence; no RDB snapshots besides
    )
    return Launch(argv=[binary, str(config)], env={}, cwd=state)


def _stop_packaged_service(port: int) -> None:
    # apt-get install may start the packaged server on 6379: it must not hold our port.
    if _probes.redis(port):
        subprocess.run(["service", "redis-server", "stop"], capture_output=True, check=False)
