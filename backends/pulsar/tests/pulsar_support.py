"""Helpers shared by the Pulsar test modules (a plain module: conftest is not imported)."""

from __future__ import annotations

import os
import re
import urllib.parse
import uuid

import pytest

#: The broker the launcher runs; PULSAR_TEST_URL / PULSAR_TEST_ADMIN point the tests elsewhere.
URL = os.environ.get("PULSAR_TEST_URL", "pulsar://127.0.0.1:6650")
ADMIN = os.environ.get("PULSAR_TEST_ADMIN", "http://127.0.0.1:8080")
_parts = urllib.parse.urlsplit(URL)
ADDRESS = (_parts.hostname or "127.0.0.1", _parts.port or 6650)
NAMESPACE = "public/default"
#: Backend options every test bus gets (the admin URL only when pointed elsewhere).
OPTIONS: dict[str, object] = (
    {"admin_url": ADMIN} if "PULSAR_TEST_ADMIN" in os.environ else {}
)

#: Topics the tests of this session used, deleted (with their DLQs) when it ends.
CREATED: list[str] = []


def unique_topic(request: pytest.FixtureRequest, prefix: str = "pt") -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    name = name.removeprefix("test-")[:24].strip("-")
    topic = f"{prefix}-{name}-{uuid.uuid4().hex[:8]}"
    CREATED.append(topic)
    return topic
