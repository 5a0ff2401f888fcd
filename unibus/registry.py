"""Find backends by URL scheme through the ``unibus.backends`` entry-point group.

Core never imports a backend directly; every backend, the built-ins included, is found here.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from unibus.errors import BackendNotInstalledError, ConfigError, UnknownSchemeError

__all__ = ["KNOWN_BACKENDS", "backend_class", "installed_backends", "schemes"]

GROUP = "unibus.backends"

#: Schemes of the backends unibus publishes, and the distribution that serves each.
KNOWN_BACKENDS: dict[str, str] = {
    "kafka": "unibus-kafka",
    "kafka+ssl": "unibus-kafka",
    "rabbitmq": "unibus-rabbitmq",
    "amqp": "unibus-rabbitmq",
    "amqps": "unibus-rabbitmq",
    "sqs": "unibus-sqs",
    "sqs+fifo": "unibus-sqs",
    "nats": "unibus-nats",
    "tls+nats": "unibus-nats",
    "pulsar": "unibus-pulsar",
    "pulsar+ssl": "unibus-pulsar",
}


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        other = found.get(ep.name)
        if other is not None and other.value != ep.value:
            raise ConfigError(
                f"URL scheme {ep.name!r} is registered twice ({other.value} and {ep.value}); "
                "uninstall one of the two distributions"
            )
        found[ep.name] = ep
    return found


def schemes() -> list[str]:
    """Every URL scheme an installed backend serves."""
    return sorted(_entry_points())


def backend_class(scheme: str) -> Any:
    """The backend class serving ``scheme``; typed errors say how to get it."""
    ep = _entry_points().get(scheme.lower())
    if ep is None:
        if scheme.lower() in KNOWN_BACKENDS:
            raise BackendNotInstalledError(scheme, KNOWN_BACKENDS[scheme.lower()])
        raise UnknownSchemeError(
            f"no backend serves URL scheme {scheme!r}; installed: {', '.join(schemes())}"
        )
    try:
        return ep.load()
    except ImportError as exc:
        module = ep.value.split(":")[0]
        if module.startswith("unibus."):
            raise ConfigError(f"built-in backend {scheme!r} failed to load: {exc}") from exc
        dist = KNOWN_BACKENDS.get(scheme.lower(), module.split(".")[0].replace("_", "-"))
        raise BackendNotInstalledError(scheme, dist) from exc
    except Exception as exc:
        raise ConfigError(f"backend {scheme!r} ({ep.value}) failed to load: {exc}") from exc


def installed_backends() -> dict[str, Any]:
    """Backend name -> class for every installed backend that loads, one entry per backend."""
    out: dict[str, Any] = {}
    for scheme in schemes():
        try:
            cls = backend_class(scheme)
        except ConfigError:
            continue
        out.setdefault(cls.name, cls)
    return out


def scheme_of(cls: Any) -> str:
    """The canonical URL scheme of a backend class (its first registered scheme)."""
    names = [s for s in schemes() if _entry_points()[s].value.endswith(":" + cls.__name__)]
    return cls.name if cls.name in names else (names[0] if names else cls.name)
