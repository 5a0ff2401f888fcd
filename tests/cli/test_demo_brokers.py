"""The demo on each real broker, changing only the URL (the reference scenario's promise).

The URLs come from the local launcher (`unibus dev up`, started by `scripts/test`); a broker
that is not running fails its test with the command that starts it. SQS runs on moto, whose
SNS gives the fan-out the notification service needs.
"""

import re

import pytest

from unibus.devstack import DevStack

from .conftest import Run

BROKERS = {  # launcher name -> (marker name, URL options the demo needs)
    "rabbitmq": ("rabbitmq", ""),
    "kafka": ("kafka", ""),
    "moto": ("sqs", "groups=sns"),
    "nats": ("nats", ""),
    "pulsar": ("pulsar", ""),
}


def url_of(name: str) -> str:
    status = {s.name: s for s in DevStack().status([name])}[name]
    if status.state not in ("running", "external"):
        pytest.fail(f"{name} is {status.state}: start it with `uv run unibus dev up {name}`")
    extra = BROKERS[name][1]
    if not extra:
        return status.url
    return status.url + ("&" if "?" in status.url else "?") + extra


def stage_row(output: str, group: str) -> list[str]:
    line = next(line for line in output.splitlines() if re.match(rf"\W*{group}\s+│", line))
    return re.findall(r"\d+", line)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.broker(m)) for n, (m, _) in BROKERS.items()])
def test_demo_counts_are_the_same_on_every_broker(run: Run, name: str) -> None:
    result = run(["--log-level", "critical", "demo", "--orders", "12", "--timeout", "240",
                  "--url", url_of(name)])
    assert result.exit_code == 0, result.output
    #                                       in  ok  retries  to DLQ
    assert stage_row(result.output, "validation") == ["12", "11", "0", "1"]
    assert stage_row(result.output, "payment") == ["11", "10", "3", "1"]
    assert stage_row(result.output, "fulfilment") == ["10", "10", "0", "0"]
    assert stage_row(result.output, "notifications") == ["43", "43", "0", "0"]
    assert "dead-letter queue: 2 messages" in result.output
