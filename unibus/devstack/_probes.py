"""Protocol-level readiness probes: a broker is ready when it answers its own protocol."""

from __future__ import annotations

import json
import socket
import struct
import urllib.error
import urllib.request

__all__ = ["amqp", "http_ok", "kafka", "nats", "postgres", "redis"]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    sock.settimeout(3)
    return sock


def amqp(port: int) -> bool:
    """The AMQP 0-9-1 protocol header is answered with a Connection.Start method frame."""
    try:
        with _connect(port) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
            return len(frame) == 7 and frame[0] == 1  # frame type METHOD
    except OSError:
        return False


def nats(port: int, monitor_port: int) -> bool:
    """The server greets with INFO, and JetStream answers on the monitoring endpoint."""
    try:
        with _connect(port) as sock:
            if not sock.recv(4096).startswith(b"INFO {"):
                return False
        body = http_get(f"http://127.0.0.1:{monitor_port}/jsz")
        return body is not None and "config" in json.loads(body)
    except (OSError, ValueError):
        return False


def kafka(port: int) -> bool:
    """An ApiVersions (v0) request gets a response with error code 0."""
    client = b"unibus-dev"
    body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
    try:
        with _connect(port) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(4)
            if len(header) < 4:
                return False
            data = b""
            size = struct.unpack(">i", header)[0]
            while len(data) < min(size, 6):
                chunk = sock.recv(size - len(data))
                if not chunk:
                    return False
                data += chunk
            correlation, error = struct.unpack(">ih", data[:6])
            return bool(correlation == 7 and error == 0)
    except OSError:
        return False


def redis(port: int) -> bool:
    """PING is answered with PONG (not with ``-LOADING`` while the append-only file loads)."""
    try:
        with _connect(port) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def postgres(port: int, user: str, database: str) -> bool:
    """A startup message for ``user`` on ``database`` reaches ReadyForQuery without a password
    (so the cluster is up, out of recovery, and the database exists)."""
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database))) + b"\0"
    startup = struct.pack(">ii", 8 + len(params), 196608) + params  # protocol 3.0
    try:
        with _connect(port) as sock:
            sock.sendall(startup)
            buffered = b""
            while True:
                while len(buffered) < 5 or len(buffered) < 1 + _length(buffered):
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    buffered += chunk
                kind, body = buffered[:1], buffered[5:1 + _length(buffered)]
                if kind == b"E" or (kind == b"R" and body != b"\0\0\0\0"):
                    return False  # an error (e.g. "starting up"), or a password is wanted
                if kind == b"Z":
                    sock.sendall(b"X\0\0\0\4")  # Terminate
                    return True
                buffered = buffered[1 + _length(buffered):]
    except OSError:
        return False


def _length(message: bytes) -> int:
    return int(struct.unpack(">i", message[1:5])[0]) if len(message) >= 5 else 4


def http_get(url: str, timeout: float = 3.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if 200 <= response.status < 300:
                return str(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return None


def http_ok(url: str, must_contain: str = "") -> bool:
    body = http_get(url)
    return body is not None and must_contain in body
