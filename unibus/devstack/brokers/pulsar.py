"""Apache Pulsar standalone (broker + bookie + RocksDB metadata) from Maven Central jars."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _jars, _probes
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"broker": 6650, "admin": 8080, "bookie": 3181}
VERSION = "4.0.7"

_CONF = """\
clusterName=standalone
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
brokerServicePort={broker}
webServicePort={admin}
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
delayedDeliveryEnabled=true
# Off: no Python client can open a transaction, and with the coordinator on every topic load
# (a broker preloads all topics of its bundles after a restart) first recovers the topic's
# transaction buffer, holding back dispatch of what is published meanwhile.
transactionCoordinatorEnabled=false
systemTopicEnabled=true
topicLevelPoliciesEnabled=true
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
functionsWorkerEnabled=false
brokerDeleteInactiveTopicsEnabled=false
brokerDeduplicationEnabled=false
# The bookie reads this file too. Without allowEphemeralPorts the standalone bookie ignores
# --bookkeeper-port and takes a random port on every interface; with it, it binds
# {bookie} on the loopback interface only.
allowEphemeralPorts=true
allowLoopback=true
listeningInterface=lo
"""

_LOG4J2 = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.standalone.name = org.apache.pulsar.PulsarStandalone
logger.standalone.level = INFO
"""

# Pulsar reads JVM internals for load-balancing and GC metrics.
_OPENS = [f"--add-opens={m}=ALL-UNNAMED" for m in (
    "java.base/java.nio", "java.base/jdk.internal.misc", "java.base/sun.nio.ch",
    "java.base/java.lang", "java.base/jdk.internal.platform", "java.management/sun.management",
)]


def _ready(admin: int) -> bool:
    """Ready when public/default exists and the broker's health check (a write and a read
    through the bookie) passes: the web API keeps answering after the bookie has died."""
    base = f"http://127.0.0.1:{admin}/admin/v2"
    return (_probes.http_ok(f"{base}/namespaces/public", "public/default")
            and _probes.http_get(f"{base}/brokers/health", timeout=20.0) == "ok")


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    ready = functools.partial(_ready, ports["admin"])
    url = f"pulsar://127.0.0.1:{ports['broker']}"
    if ports["admin"] != PORTS["admin"]:  # the backend's default admin URL is <host>:8080
        url += f"?admin_url=http://127.0.0.1:{ports['admin']}"
    return BrokerSpec(name="pulsar", version=VERSION, ports=dict(ports), url=url,
                      prepare=functools.partial(prepare, ports=ports), ready=ready,
                      start_timeout=240.0)


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    lib = _jars.resolve("pulsar", cache)
    state.mkdir(parents=True, exist_ok=True)
    conf = state / "standalone.conf"
    conf.write_text(_CONF.format(**ports))
    log_config = state / "log4j2.properties"
    log_config.write_text(_LOG4J2)
    argv = [
        "java", "-Xms256m", "-Xmx768m", "-XX:MaxDirectMemorySize=512m", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={log_config}", "-Dpulsar.allocator.exit_on_oom=true",
        "-Dio.netty.tryReflectionSetAccessible=true", *_OPENS, "-cp", f"{lib}/*",
        "org.apache.pulsar.PulsarStandaloneStarter", "--config", str(conf),
        "--no-functions-worker", "--no-stream-storage",
        "--bookkeeper-dir", str(state / "bookkeeper"), "--metadata-dir", str(state / "metadata"),
        "--bookkeeper-port", str(ports["bookie"]),
    ]
    return Launch(argv=argv, env={}, cwd=state)
