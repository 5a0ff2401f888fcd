"""``sqlite:///path/to/bus.db``: the embedded durable default, a file on this machine.

Several processes may share the file (WAL mode). As with SQLAlchemy URLs the path after
``sqlite:///`` is relative to the working directory; ``sqlite:////abs/bus.db`` is absolute.
"""

from __future__ import annotations

import os
from typing import ClassVar

from unibus.backends._engine.backend import EmbeddedBackend
from unibus.errors import ConfigError

__all__ = ["SQLiteBackend"]


class SQLiteBackend(EmbeddedBackend):
    name: ClassVar[str] = "sqlite"
    distribution: ClassVar[str] = "unibus"
    durable: ClassVar[bool] = True

    def database(self) -> tuple[str, str]:
        path = self.parts.netloc + self.parts.path.removeprefix("/")
        if not path or path.endswith("/"):
            raise ConfigError(
                f"no database file in {self.url!r}: use sqlite:///relative/bus.db or "
                "sqlite:////absolute/bus.db"
            )
        if path == ":memory:":
            raise ConfigError("use memory:// for an in-memory database")
        if "\x00" in path:
            raise ConfigError(f"the database path in {self.url!r} contains a NUL character")
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(os.path.dirname(path)):
            raise ConfigError(f"the directory of the database {path!r} does not exist")
        # Per process: a forked child must open its own connection and thread.
        return f"sqlite:{os.getpid()}:{os.path.realpath(path)}", path
