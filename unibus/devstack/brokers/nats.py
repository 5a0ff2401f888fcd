"""NATS server with JetStream, from the Debian package ``nats-server``."""

from __future__ import annotations

from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._packages import ensure_debian_package
from unibus.devstack._spec import BrokerSpec, Launch

PORT, MONITOR = 4222, 8222


def spec() -> BrokerSpec:
    return BrokerSpec(name="nats", version="debian nats-server", ports={"client": PORT,
                      "monitor": MONITOR}, url=f"nats://127.0.0.1:{PORT}", prepare=prepare,
                      ready=lambda: _probes.nats(PORT, MONITOR), start_timeout=30.0)


def prepare(state: Path, cache: Path) -> Launch:
    binary = ensure_debian_package("nats-server", "nats-server")
    store = state / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-a", "127.0.0.1", "-p", str(PORT), "-m", str(MONITOR), "-js",
            "-sd", str(store)]
    return Launch(argv=argv, env={}, cwd=state)
