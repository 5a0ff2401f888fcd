"""Apache Kafka, single-node KRaft (broker + controller), from Maven Central jars."""

from __future__ import annotations

import functools
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _jars, _probes
from unibus.devstack._errors import DevStackError
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"broker": 9092, "controller": 9093}
VERSION = "4.1.1"

_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
"""

_LOG4J2 = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    return BrokerSpec(name="kafka", version=VERSION, ports=dict(ports),
                      url=f"kafka://127.0.0.1:{ports['broker']}",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.kafka, ports["broker"]),
                      start_timeout=120.0)


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    lib = _jars.resolve("kafka", cache)
    state.mkdir(parents=True, exist_ok=True)
    data = state / "data"
    properties = state / "server.properties"
    properties.write_text(
        _PROPERTIES.format(port=ports["broker"], controller=ports["controller"], data=data))
    log_config = state / "log4j2.properties"
    log_config.write_text(_LOG4J2)
    java = ["java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log_config}", "-cp", f"{lib}/*"]
    if not (data / "meta.properties").exists():
        cluster = str(uuid.uuid4().hex[:22])
        result = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(properties),
             "--standalone"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DevStackError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")
    return Launch(argv=[*java, "kafka.Kafka", str(properties)], env={}, cwd=state)
