"""ElasticMQ (SQS-compatible) from its Maven Central jars."""

from __future__ import annotations

import functools
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
                      start_timeout=60.0)


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
    argv = ["java", "-Xms64m", "-Xmx384m", f"-Dconfig.file={conf}", "-cp", f"{lib}/*",
            "org.elasticmq.server.Main"]
    return Launch(argv=argv, env={}, cwd=state)
