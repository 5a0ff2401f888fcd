import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from unibus.cli import app

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests say which broker they use; the developer's environment does not leak in."""
    for name in ("UNIBUS_URL", "UNIBUS_CONFIG", "UNIBUS_SERIALIZER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the ``unibus`` logger for its process; undo that between tests."""
    logger = logging.getLogger("unibus")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def run() -> Run:
    def invoke(args: Sequence[str], input: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), input=input)

    return invoke


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bus.db"
