"""NATS server with JetStream, from the Debian package ``nats-server``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._packages import debian_version, ensure_debian_package
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"client": 4222, "monitor": 8222}


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    return BrokerSpec(name="nats", version=debian_version("nats-server"), ports=dict(ports),
                      url=f"nats://127.0.0.1:{ports['client']}",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.nats, ports["client"], ports["monitor"]),
                      start_timeout=30.0)


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    binary = ensure_debian_package("nats-server", "nats-server")
    store = state / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-a", "127.0.0.1", "-p", str(ports["client"]), "-m", str(ports["monitor"]),
            "-js", "-sd", str(store)]
    return Launch(argv=argv, env={}, cwd=state)
