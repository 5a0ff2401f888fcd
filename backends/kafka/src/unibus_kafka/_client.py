"""Connection settings shared by the producer, consumers and the admin client."""

from __future__ import annotations

import urllib.parse
from typing import Any

from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from unibus.errors import ConfigError
from unibus_kafka._options import KafkaOptions

__all__ = ["bootstrap_servers", "connection_settings"]


def bootstrap_servers(parts: urllib.parse.SplitResult) -> list[str]:
    """``host:port`` of each broker in ``kafka://h1:9092,h2:9092``."""
    hosts = parts.netloc.rpartition("@")[2]
    servers = [h.strip() for h in hosts.split(",") if h.strip()]
    if not servers:
        raise ConfigError("a Kafka URL names at least one broker: kafka://host:9092")
    out = []
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep:
            host, port = server, "9092"
        if not port.isdigit():
            raise ConfigError(f"malformed broker address {server!r} in the Kafka URL")
        out.append(f"{host}:{port}")
    return out


def connection_settings(parts: urllib.parse.SplitResult, options: KafkaOptions) -> dict[str, Any]:
    """Keyword arguments every aiokafka client takes: servers, client id, TLS, SASL."""
    protocol: str | None = options.security_protocol
    username = options.sasl_username or (
        urllib.parse.unquote(parts.username) if parts.username else None
    )
    password = options.sasl_password or (
        urllib.parse.unquote(parts.password) if parts.password else None
    )
    if protocol is None:
        tls = parts.scheme == "kafka+ssl"
        sasl = options.sasl_mechanism is not None or username is not None
        protocol = {(False, False): "PLAINTEXT", (True, False): "SSL",
                    (False, True): "SASL_PLAINTEXT", (True, True): "SASL_SSL"}[(tls, sasl)]
    assert protocol is not None
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(parts),
        "client_id": options.client_id,
        "request_timeout_ms": options.request_timeout_ms,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=options.ssl_cafile, certfile=options.ssl_certfile,
            keyfile=options.ssl_keyfile,
        )
        context.check_hostname = options.ssl_check_hostname
        settings["ssl_context"] = context
    if protocol.startswith("SASL"):
        if username is None or password is None:
            raise ConfigError("SASL needs a user name and password: kafka://user:pass@host "
                              "or the sasl_username / sasl_password options")
        settings["sasl_mechanism"] = options.sasl_mechanism or "PLAIN"
        settings["sasl_plain_username"] = username
        settings["sasl_plain_password"] = password
    return settings
