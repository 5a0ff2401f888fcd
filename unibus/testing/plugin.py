"""pytest plugin shipped with unibus (entry point ``pytest11``): markers and options.

``--unibus-url URL`` runs ``tests/test_contract_url.py``-style suites against any URL.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unibus")
    group.addoption(
        "--unibus-url",
        default=None,
        help="broker URL for contract suites that read it (default: the class's url)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "broker(name): the test needs the named real broker")
