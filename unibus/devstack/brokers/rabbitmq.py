"""RabbitMQ from the Debian package ``rabbitmq-server``, as a node the launcher owns."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._packages import debian_version, ensure_debian_package
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"amqp": 5672, "management": 15672}


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    return BrokerSpec(name="rabbitmq", version=debian_version("rabbitmq-server"), ports=dict(ports),
                      url=f"amqp://guest:guest@127.0.0.1:{ports['amqp']}/",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.amqp, ports["amqp"]), start_timeout=90.0,
                      after_stop=after_stop)


def _env(state: Path, ports: Mapping[str, int]) -> dict[str, str]:
    amqp = ports["amqp"]
    # A second node (other ports, e.g. in tests) needs its own node name and dist port.
    node = "unibus@localhost" if amqp == PORTS["amqp"] else f"unibus-{amqp}@localhost"
    return {
        "HOME": str(state),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp),
        # RabbitMQ's own rule (AMQP port + 20000), pinned so it never drifts.
        "RABBITMQ_DIST_PORT": str(amqp + 20000),
        # Erlang distribution listens on every interface unless told otherwise.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_MNESIA_BASE": str(state / "mnesia"),
        "RABBITMQ_LOG_BASE": str(state / "log"),
        "RABBITMQ_PID_FILE": str(state / "rabbitmq.pid"),
        "RABBITMQ_CONFIG_FILE": str(state / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(state / "enabled_plugins"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ERL_ARGS": "+S 2:2 +sbwt none",
    }


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    ensure_debian_package("rabbitmq-server", "rabbitmq-server")
    # The packaged /usr/sbin wrapper switches to the rabbitmq user; the node runs as the
    # launcher's user instead, so its state can live in the user's state dir.
    binary = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    _stop_packaged_service(ports["amqp"])
    for sub in ("mnesia", "log"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "rabbitmq.conf").write_text(
        "loopback_users = none\n"
        f"listeners.tcp.default = 127.0.0.1:{ports['amqp']}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {ports['management']}\n"
        "vm_memory_high_watermark.relative = 0.2\n"
        "disk_free_limit.absolute = 200MB\n"
    )
    (state / "enabled_plugins").write_text("[rabbitmq_management].\n")
    return Launch(argv=[binary], env=_env(state, ports), cwd=state)


def after_stop(state: Path) -> None:
    """Erlang's port mapper outlives the node; stop it if no other node uses it."""
    env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
    names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, env=env,
                           check=False)
    if names.returncode == 0 and "name " not in names.stdout:
        subprocess.run(["epmd", "-kill"], capture_output=True, env=env, check=False)


def _stop_packaged_service(port: int) -> None:
    # apt-get install may start the packaged node on 5672: it must not hold our ports.
    if _probes.amqp(port):
        subprocess.run(["service", "rabbitmq-server", "stop"], capture_output=True,
                       check=False)
