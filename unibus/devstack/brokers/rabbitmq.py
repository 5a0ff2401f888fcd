"""RabbitMQ from the Debian package ``rabbitmq-server``, as a node the launcher owns."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._packages import ensure_debian_package
from unibus.devstack._spec import BrokerSpec, Launch

PORT, MANAGEMENT, DIST = 5672, 15672, 25672
NODE = "unibus@localhost"


def spec() -> BrokerSpec:
    return BrokerSpec(name="rabbitmq", version="debian rabbitmq-server",
                      ports={"amqp": PORT, "management": MANAGEMENT},
                      url=f"amqp://guest:guest@127.0.0.1:{PORT}/", prepare=prepare,
                      ready=lambda: _probes.amqp(PORT), start_timeout=90.0,
                      after_stop=after_stop)


def _env(state: Path) -> dict[str, str]:
    return {
        "HOME": str(state),
        "RABBITMQ_NODENAME": NODE,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(PORT),
        "RABBITMQ_DIST_PORT": str(DIST),
        "RABBITMQ_MNESIA_BASE": str(state / "mnesia"),
        "RABBITMQ_LOG_BASE": str(state / "log"),
        "RABBITMQ_PID_FILE": str(state / "rabbitmq.pid"),
        "RABBITMQ_CONFIG_FILE": str(state / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(state / "enabled_plugins"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ERL_ARGS": "+S 2:2 +sbwt none",
    }


def prepare(state: Path, cache: Path) -> Launch:
    ensure_debian_package("rabbitmq-server", "rabbitmq-server")
    # The packaged /usr/sbin wrapper switches to the rabbitmq user; the node runs as the
    # launcher's user instead, so its state can live in the user's state dir.
    binary = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    _stop_packaged_service()
    for sub in ("mnesia", "log"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "rabbitmq.conf").write_text(
        "loopback_users = none\n"
        f"listeners.tcp.default = 127.0.0.1:{PORT}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {MANAGEMENT}\n"
        "vm_memory_high_watermark.relative = 0.2\n"
        "disk_free_limit.absolute = 200MB\n"
    )
    (state / "enabled_plugins").write_text("[rabbitmq_management].\n")
    return Launch(argv=[binary], env=_env(state), cwd=state)


def after_stop(state: Path) -> None:
    """Erlang's port mapper outlives the node; stop it if no other node uses it."""
    env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
    names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, env=env,
                           check=False)
    if names.returncode == 0 and "name " not in names.stdout:
        subprocess.run(["epmd", "-kill"], capture_output=True, env=env, check=False)


def _stop_packaged_service() -> None:
    # apt-get install may start the packaged node on 5672: it must not hold our ports.
    if _probes.amqp(PORT):
        subprocess.run(["service", "rabbitmq-server", "stop"], capture_output=True,
                       check=False)
