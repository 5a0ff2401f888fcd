"""The capability matrix: one column per installed backend variant, read from the declarations.

Both ``unibus capabilities`` and the generated docs read this; nothing here restates what a
backend can do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from unibus.bus import variants
from unibus.capabilities import Capabilities
from unibus.errors import BackendNotInstalledError, ConfigError
from unibus.registry import KNOWN_BACKENDS, backend_class, schemes

__all__ = ["Column", "Matrix", "Unavailable", "collect", "column_for"]

#: Column order: the built-ins, then the brokers in the order the docs introduce them.
_ORDER = ("memory", "sqlite", "kafka", "rabbitmq", "sqs", "nats", "pulsar")


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One backend under one set of options."""

    backend: str
    label: str
    capabilities: Capabilities


@dataclasses.dataclass(frozen=True, slots=True)
class Unavailable:
    """A registered or known backend that did not load, and what to do about it."""

    backend: str
    problem: str
    install: str | None = None  # the command that installs it

    def __str__(self) -> str:
        if self.install is None or self.install in self.problem:
            return self.problem
        return f"{self.problem}; install it with `{self.install}`"


@dataclasses.dataclass(frozen=True, slots=True)
class Matrix:
    columns: tuple[Column, ...]
    unavailable: tuple[Unavailable, ...] = ()

    def backends(self) -> list[str]:
        """Backend names in column order, each once."""
        return list(dict.fromkeys(c.backend for c in self.columns))

    def limitations(self) -> list[tuple[tuple[str, ...], str, str]]:
        """(column labels, dimension, why) for every limitation a backend declares; variants
        of one backend that share a reason share the row."""
        rows: list[tuple[tuple[str, ...], str, str]] = []
        for backend in self.backends():
            grouped: dict[tuple[str, str], list[str]] = {}
            for column in self.columns:
                if column.backend == backend:
                    for dimension, reason in column.capabilities.reasons.items():
                        grouped.setdefault((dimension, reason), []).append(column.label)
            rows += [(tuple(labels), dimension, reason)
                     for (dimension, reason), labels in grouped.items()]
        return rows

    def only(self, backend: str) -> Matrix:
        return Matrix(
            tuple(c for c in self.columns if c.backend == backend),
            tuple(u for u in self.unavailable if u.backend == backend),
        )


def _rank(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def collect(backend: str | None = None) -> Matrix:
    """Every installed backend's variants (or only ``backend``, a name or URL scheme);
    backends that fail to load are listed as unavailable with the install command."""
    classes: dict[str, Any] = {}
    failed: dict[str, str] = {}
    wanted = [backend.lower()] if backend else schemes()
    for scheme in wanted:
        try:
            cls = backend_class(scheme)
        except BackendNotInstalledError as exc:
            name = exc.distribution.removeprefix("unibus-")
            failed.setdefault(name, str(BackendNotInstalledError(name, exc.distribution)))
            continue
        except ConfigError as exc:
            if backend is not None and scheme not in KNOWN_BACKENDS:
                named = _by_name(scheme)
                if named is not None:
                    classes.setdefault(named.name, named)
                    continue
                raise
            failed.setdefault(KNOWN_BACKENDS.get(scheme, scheme).removeprefix("unibus-"),
                              str(exc))
            continue
        classes.setdefault(cls.name, cls)
    if backend is None:
        for dist in set(KNOWN_BACKENDS.values()):
            name = dist.removeprefix("unibus-")
            if name not in classes and name not in failed:
                failed[name] = str(BackendNotInstalledError(name, dist))
    columns = [
        Column(name, label, classes[name].declare(options))
        for name in sorted(classes, key=_rank)
        for label, options in variants(classes[name])
    ]
    missing = [Unavailable(name, failed[name], _install(name))
               for name in sorted(failed, key=_rank) if name not in classes]
    return Matrix(tuple(columns), tuple(missing))


def _install(name: str) -> str | None:
    dist = f"unibus-{name}"
    return f"pip install {dist}" if dist in KNOWN_BACKENDS.values() else None


def _by_name(name: str) -> Any | None:
    """The backend class whose ``name`` (not scheme) is ``name``, if one loads."""
    for scheme in schemes():
        try:
            cls = backend_class(scheme)
        except ConfigError:
            continue
        if cls.name == name:
            return cls
    return None


def column_for(backend: str, options: Mapping[str, Any]) -> Column:
    """``backend`` (a name or URL scheme) under explicit ``options``; ConfigError if invalid."""
    scheme = backend.lower()
    cls = backend_class(scheme) if scheme in schemes() else _by_name(backend)
    if cls is None:
        cls = backend_class(scheme)  # raises the typed error naming the scheme
        scheme = cls.name
    elif scheme not in schemes():
        scheme = cls.name
    parsed = cls.parse_options(f"{scheme}://", dict(options))
    detail = ", ".join(f"{k}={v}" for k, v in options.items())
    label = f"{scheme} ({detail})" if detail else scheme
    return Column(cls.name, label, cls.declare(parsed))
