"""A client operation that finishes after its event loop closed must not abort the process.

pulsar-client completes operations on its own threads; a callback that raises there (as
``loop.call_soon_threadsafe`` does once the loop is closed) ends the process with
"terminate called". Each test runs a child process against the real broker through
:class:`HoldingProxy`, which keeps the broker's answers back while the child starts an
operation and lets ``asyncio.run`` end with it pending; the answers are then let through and
the client finishes the operation with no loop left.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import pulsar_support
import pytest

TIMEOUT = 60.0

_CHILD = r'''
import asyncio, logging, sys, threading
import unibus

url, admin, topic, operation, created = sys.argv[1:6]

def wait_for(word):
    got = sys.stdin.readline().strip()
    assert got == word, got

finished = threading.Semaphore(0)

class ApplicationFailed(Exception):
    pass

class Creations(logging.Handler):
    """The client logs "Created consumer/producer" on its thread just before the callback."""
    def emit(self, record):
        if f"Created {operation} on broker" in record.getMessage():
            finished.release()

client_log = logging.getLogger("unibus.pulsar.client")
client_log.setLevel(logging.DEBUG)  # DEBUG: the client's lines come through Python
client_log.addHandler(Creations())
bus = None

async def main():
    global bus
    bus = await unibus.connect(url, admin_url=admin)
    print("connected", flush=True)
    wait_for("start")
    if operation == "consumer":
        pending = asyncio.ensure_future(bus.consumer([topic], group="g"))
    else:
        pending = asyncio.ensure_future(bus.publish(topic, bus.message(b"x")))
    print("started", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, wait_for, "stop")
    assert not pending.done(), pending
    raise ApplicationFailed("with an operation pending")

try:
    asyncio.run(main())
except ApplicationFailed:
    pass
print("loop closed", flush=True)
for _ in range(int(created)):
    assert finished.acquire(timeout=60), "the client did not finish"
# One more round trip on the client's (single) thread: the callbacks that followed the
# "Created" lines have returned by the time it is answered.
bus.backend.client.get_topic_partitions(topic)
print("finished", flush=True)
'''


class HoldingProxy:
    """A TCP proxy to the broker that can hold back what the broker sends.

    While held, the client's requests still reach the broker (``asked`` is set on the first
    one) but the answers wait in the proxy until :meth:`release`.
    """

    def __init__(self, broker: tuple[str, int]) -> None:
        self._broker = broker
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"pulsar://127.0.0.1:{self._listener.getsockname()[1]}"
        self._passing = threading.Event()
        self._passing.set()
        self.asked = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._passing.clear()

    def release(self) -> None:
        self._passing.set()

    def close(self) -> None:
        self.release()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                broker = socket.create_connection(self._broker)
            except OSError:
                return
            self._sockets += [client, broker]
            threading.Thread(target=self._pipe, args=(client, broker, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(broker, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if answers:
                    self._passing.wait()
                elif not self._passing.is_set():
                    self.asked.set()
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy() -> Iterator[HoldingProxy]:
    held = HoldingProxy(pulsar_support.ADDRESS)
    yield held
    held.close()


class Child:
    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def expect(self, line: str) -> None:
        assert self.process.stdout is not None
        got = self.process.stdout.readline().strip()
        if got != line:
            self.fail(f"expected {line!r}, got {got!r}")

    def say(self, line: str) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except BrokenPipeError:
            self.fail(f"exited before {line!r}")

    def fail(self, what: str) -> None:
        self.process.kill()
        _, err = self.process.communicate(timeout=TIMEOUT)
        pytest.fail(f"child: {what}; exit status {self.process.returncode}; stderr:\n{err}")


@pytest.mark.parametrize(("operation", "created"), [("consumer", 2), ("producer", 1)])
def test_an_operation_finishing_after_the_loop_closed_does_not_abort(
        request: pytest.FixtureRequest, proxy: HoldingProxy, operation: str, created: int,
) -> None:
    # Opening a consumer subscribes to the topic and to its group's retry topic.
    topic = pulsar_support.unique_topic(request)
    child = Child([proxy.url, pulsar_support.ADMIN, topic, operation, str(created)])
    try:
        child.expect("connected")
        proxy.hold()
        child.say("start")
        child.expect("started")
        if not proxy.asked.wait(TIMEOUT):
            child.fail("the operation never reached the client")
        child.say("stop")
        child.expect("loop closed")
        proxy.release()
        child.expect("finished")
        _, err = child.process.communicate(timeout=TIMEOUT)
    finally:
        if child.process.poll() is None:
            child.process.kill()
            child.process.communicate()
    assert child.process.returncode == 0, err
    assert "terminate called" not in err
