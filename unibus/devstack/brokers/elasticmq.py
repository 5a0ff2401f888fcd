"""ElasticMQ (SQS-compatible) from its Maven Central jars."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _jars, _probes
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"sqs": 9324}


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    endpoint = f"http://127.0.0.1:{ports['sqs']}"
    return BrokerSpec(name="elasticmq", version="1.6.11", ports=dict(ports),
                      url=f"sqs://us-east-1?endpoint_url={endpoint}",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.http_ok, f"{endpoint}/?Action=ListQueues",
                                              "ListQueuesResponse"),
                      settled=functools.partial(_restored, endpoint),
                      start_timeout=60.0)


# ElasticMQ answers before it has recreated the queues it persisted, and a client's
# CreateQueue for one of them in that window makes the restore fail: the server shuts down
# ("Could not start server because QueueAlreadyExists"). So before it starts, prepare() reads
# the persisted queue names (H2's own shell, read-only; the server is not running), and the
# start waits until each of them answers GetQueueUrl.
_RESTORING = "restoring-queues"


def _persisted_queues(state: Path, lib: Path) -> list[str]:
    database = state / "messages"
    if not database.with_suffix(".mv.db").exists():
        return []
    h2 = sorted(lib.glob("h2-*.jar"))
    if not h2:
        return []
    try:
        result = subprocess.run(
            ["java", "-cp", str(h2[-1]), "org.h2.tools.Shell", "-url",
             f"jdbc:h2:{database};ACCESS_MODE_DATA=r", "-sql", "SELECT name FROM queue"],
            capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    # Shell prints a header (NAME), one name per line, then "(n rows, ...)".
    lines = result.stdout.splitlines()
    return [line.strip() for line in lines[1:] if line.strip() and not line.startswith("(")]


def _restored(endpoint: str, state: Path) -> bool:
    expected = state / _RESTORING
    names = expected.read_text().split() if expected.exists() else []
    return all(_probes.http_ok(f"{endpoint}/?Action=GetQueueUrl&QueueName={name}",
                               "GetQueueUrlResponse") for name in names)


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    port = ports["sqs"]
    lib = _jars.resolve("elasticmq", cache)
    state.mkdir(parents=True, exist_ok=True)
    conf = state / "elasticmq.conf"
    # Queues and messages persist in the state dir, so a restart keeps them. H2 writes a
    # commit out at once (WRITE_DELAY=0) instead of within 500 ms, so a SIGKILLed server keeps
    # every message whose send it acknowledged.
    conf.write_text(
        'include classpath("application.conf")\n'
        f'node-address {{ protocol = http, host = 127.0.0.1, port = {port}, context-path = "" }}\n'
        f'rest-sqs {{ enabled = true, bind-port = {port}, bind-hostname = "127.0.0.1", '
        'sqs-limits = strict }\n'
        "rest-stats { enabled = false }\n"
        "queues-storage { enabled = true, path = \"" + str(state / "queues.conf") + "\" }\n"
        "messages-storage { enabled = true, uri = \"jdbc:h2:" + str(state / "messages")
        + ";WRITE_DELAY=0\" }\n"
    )
    (state / _RESTORING).write_text("\n".join(_persisted_queues(state, lib)))
    argv = ["java", "-Xms64m", "-Xmx384m", f"-Dconfig.file={conf}", "-cp", f"{lib}/*",
            "org.elasticmq.server.Main"]
    return Launch(argv=argv, env={}, cwd=state)
