"""down leaves no process behind; restart keeps data; up is idempotent; bad names are refused.

These tests run private brokers (own state dir, own ports) so the shared stack that other tests
use is never disturbed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from unibus.devstack import DevStack, DevStackError, _process

pytestmark = pytest.mark.timeout(240)

NATS_PORTS = {"client": 14223, "monitor": 18223}
RABBITMQ_PORTS = {"amqp": 15673, "management": 15674}


def processes_mentioning(path: Path) -> list[int]:
    """PIDs whose command line, working dir or environment names ``path``.

    Catches what escaped the process group too (e.g. a daemon that called setsid), since
    everything a broker spawns inherits its environment or its state dir.
    """
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blobs = [(entry / "cmdline").read_bytes(), (entry / "environ").read_bytes(),
                     os.readlink(entry / "cwd").encode()]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(needle in blob for blob in blobs):
            found.append(int(entry.name))
    return found


@pytest.fixture
def private(tmp_path: Path) -> Iterator[DevStack]:
    stack = DevStack(tmp_path / "dev", ports={"nats": NATS_PORTS, "rabbitmq": RABBITMQ_PORTS})
    try:
        yield stack
    finally:
        stack.down()


def assert_gone(stack: DevStack, pid: int, ports: dict[str, int]) -> None:
    assert not _process.alive(pid)
    assert _process.group_members(pid) == []
    assert processes_mentioning(stack.home) == []
    assert not any(_process.port_open(port) for port in ports.values())


@pytest.mark.parametrize(("name", "ports"), [("nats", NATS_PORTS),
                                             ("rabbitmq", RABBITMQ_PORTS)])
def test_down_leaves_no_process(private: DevStack, name: str, ports: dict[str, int]) -> None:
    [up] = private.up([name])
    assert up.state == "running"
    assert up.pid is not None
    assert up.ports == ports
    private.down([name])
    assert_gone(private, up.pid, ports)
    [down] = private.status([name])
    assert down.state == "stopped"


def test_up_is_idempotent(private: DevStack) -> None:
    [first] = private.up(["nats"])
    [second] = private.up(["nats"])
    assert second.state == "running"
    assert first.pid == second.pid


async def test_restart_after_sigkill_keeps_data(private: DevStack) -> None:
    import nats

    [first] = await asyncio.to_thread(private.up, ["nats"])
    url = first.url
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.a", b"survives")
    finally:
        await client.close()
    again = await asyncio.to_thread(private.restart, "nats", kill=True)
    assert again.state == "running"
    assert again.pid != first.pid
    assert first.pid is not None
    assert not _process.alive(first.pid)
    client = await nats.connect(url)
    try:
        message = await client.jetstream().get_msg("KEEP", 1)
        assert message.data == b"survives"
    finally:
        await client.close()


def test_stop_then_start(private: DevStack) -> None:
    [first] = private.up(["nats"])
    private.stop("nats")
    assert private.status(["nats"])[0].state == "stopped"
    started = private.start("nats")
    assert started.state == "running"
    assert started.pid != first.pid


def test_logs_hold_the_broker_output(private: DevStack) -> None:
    private.up(["nats"])
    assert "Server is ready" in private.logs("nats", lines=200)


def test_sqs_names_both_sqs_servers() -> None:
    assert DevStack().names(["sqs"]) == ["elasticmq", "moto"]


def test_unknown_broker_is_refused() -> None:
    with pytest.raises(DevStackError, match="unknown broker"):
        DevStack().up(["activemq"])


def test_unknown_port_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DevStackError, match="no port"):
        DevStack(tmp_path, ports={"nats": {"cluster": 6222}})


def test_port_overrides_from_the_environment(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIBUS_DEV_PORTS", "nats.client=14224, nats.monitor=18224")
    [status] = DevStack(tmp_path).status(["nats"])
    assert status.url == "nats://127.0.0.1:14224"
    assert status.ports == {"client": 14224, "monitor": 18224}
