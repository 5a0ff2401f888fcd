"""down leaves no process behind; restart keeps data; up is idempotent; bad names are refused.

These tests run private brokers (own state dir, own ports) so the shared stack that other tests
use is never disturbed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from unibus.devstack import DevStack, DevStackError, _probes, _process

pytestmark = pytest.mark.timeout(240)



def free_port(*, also_free: int = 0) -> int:
    """A loopback port nobody listens on (nor on ``port + also_free``, for RabbitMQ's
    distribution port), so parallel runs of these tests do not collide."""
    while True:
        port = random.randrange(20000, 32000)  # below the ephemeral range
        if not any(_process.port_open(p) for p in {port, port + also_free}):
            return port


# Drawn once per run: every test of a run uses the same private ports.
NATS_PORTS = {"client": free_port(), "monitor": free_port()}
RABBITMQ_PORTS = {"amqp": free_port(also_free=20000), "management": free_port()}
REDIS_PORTS = {"client": free_port()}
POSTGRES_PORTS = {"client": free_port()}
ELASTICMQ_PORTS = {"sqs": free_port()}


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
    stack = DevStack(tmp_path / "dev", ports={"nats": NATS_PORTS, "rabbitmq": RABBITMQ_PORTS,
                                              "redis": REDIS_PORTS, "postgres": POSTGRES_PORTS})
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
                                             ("rabbitmq", RABBITMQ_PORTS),
                                             ("redis", REDIS_PORTS),
                                             ("postgres", POSTGRES_PORTS)])
def test_down_leaves_no_process(private: DevStack, name: str, ports: dict[str, int]) -> None:
    [up] = private.up([name])
    assert up.state == "running"
    assert up.pid is not None
    assert up.ports == ports
    private.down([name])
    assert_gone(private, up.pid, ports)
    [down] = private.status([name])
    assert down.state == "stopped"


async def test_stores_keep_data_across_a_sigkill(private: DevStack) -> None:
    import asyncpg
    import redis.asyncio as redis

    [cache, database] = await asyncio.to_thread(private.up, ["stores"])
    assert (cache.kind, database.kind) == ("store", "store")
    client = redis.from_url(cache.url)
    await client.set("kept", "yes")
    await client.aclose()
    conn = await asyncpg.connect(database.url)
    await conn.execute("CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('yes')")
    await conn.close()
    for name in ("redis", "postgres"):
        again = await asyncio.to_thread(private.restart, name, kill=True)
        assert again.state == "running"
    # appendfsync always: a write acknowledged just before a SIGKILL is on disk.
    client = redis.from_url(cache.url)
    assert await client.get("kept") == b"yes"
    await client.aclose()
    conn = await asyncpg.connect(database.url)
    assert await conn.fetchval("SELECT v FROM kept") == "yes"
    await conn.close()


def test_postgres_runs_unprivileged(private: DevStack) -> None:
    [status] = private.up(["postgres"])
    assert status.pid is not None
    uid = int(Path(f"/proc/{status.pid}/status").read_text().split("Uid:")[1].split()[1])
    if os.geteuid() == 0:
        # Either mapped into a user namespace or switched to the postgres user: never root
        # inside the server, which PostgreSQL would refuse.
        inside = int(Path(f"/proc/{status.pid}/uid_map").read_text().split()[0])
        assert uid != 0 or inside != 0


def test_up_is_idempotent(private: DevStack) -> None:
    [first] = private.up(["nats"])
    [second] = private.up(["nats"])
    assert second.state == "running"
    assert first.pid == second.pid


def test_two_launchers_on_one_home_start_one_broker(private: DevStack) -> None:
    # Two launchers at once (two terminals, or a test and a benchmark) on the same home.
    other = DevStack(private.home, ports=private.ports)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda stack: stack.start("nats"), (private, other))
    assert first.state == second.state == "running"
    assert first.pid == second.pid
    assert first.pid is not None
    assert private.status(["nats"])[0].pid == first.pid
    private.down(["nats"])
    assert_gone(private, first.pid, NATS_PORTS)


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


def test_stores_are_part_of_the_default_stack_and_listed_after_the_brokers() -> None:
    assert DevStack().names(["stores"]) == ["redis", "postgres"]
    names = DevStack().names()
    assert names[-2:] == ["redis", "postgres"]
    assert DevStack().names(["brokers"]) == names[:-2]
    assert {s.name: s.kind for s in DevStack().status(["redis", "nats"])} == {
        "nats": "broker", "redis": "store"}


def test_unknown_broker_is_refused() -> None:
    with pytest.raises(DevStackError, match="unknown broker"):
        DevStack().up(["activemq"])


def test_unknown_port_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DevStackError, match="no port"):
        DevStack(tmp_path, ports={"nats": {"cluster": 6222}})


def test_port_overrides_from_the_environment(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIBUS_DEV_PORTS", "nats.client=14224, nats.monitor=18224,"
                       "redis.client=16382,postgres.client=15434")
    [status] = DevStack(tmp_path).status(["nats"])
    assert status.url == "nats://127.0.0.1:14224"
    assert status.ports == {"client": 14224, "monitor": 18224}
    assert DevStack(tmp_path).spec("redis").url == "redis://127.0.0.1:16382/0"
    assert DevStack(tmp_path).spec("postgres").url == (
        "postgresql://postgres@127.0.0.1:15434/unibus")


def test_elasticmq_answers_once_its_persisted_queues_are_back(tmp_path: Path) -> None:
    # ElasticMQ answers before it has restored what it persisted; a CreateQueue of one of
    # those queues in that window makes it shut down. The start waits for them.
    stack = DevStack(tmp_path / "dev", ports={"elasticmq": ELASTICMQ_PORTS})
    endpoint = f"http://127.0.0.1:{ELASTICMQ_PORTS['sqs']}"
    try:
        stack.start("elasticmq")
        assert _probes.http_ok(f"{endpoint}/?Action=CreateQueue&QueueName=kept",
                               "CreateQueueResponse")
        # Answered once stored, and the queue is stored before it: the server keeps both.
        assert _probes.http_ok(f"{endpoint}/000000000000/kept?Action=SendMessage&MessageBody=x",
                               "SendMessageResponse")
        stack.stop("elasticmq")
        stack.start("elasticmq")
        assert (stack.home / "elasticmq" / "restoring-queues").read_text().split() == ["kept"]
        assert _probes.http_ok(f"{endpoint}/?Action=GetQueueUrl&QueueName=kept",
                               "GetQueueUrlResponse")
    finally:
        stack.down()

