"""The compose stacks are valid and cannot drift from the native launcher.

No Docker engine runs here, so each file is checked against the Compose Specification's JSON
schema (``compose-spec.json``, vendored from check-jsonschema 0.39.0, Apache-2.0, see
``compose-spec.LICENSE``) and against the launcher's own port table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from unibus.devstack.brokers import ORDER, default_ports

HERE = Path(__file__).parent
COMPOSE = HERE.parents[1] / "compose"
FILES = sorted(COMPOSE.glob("*.yaml"))
# Ports the launcher uses inside the broker only (the KRaft controller, the bookie).
INTERNAL = {("kafka", "controller"), ("pulsar", "bookie")}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_file_follows_the_compose_specification(path: Path) -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    jsonschema.validate(load(path), schema)


@pytest.mark.parametrize("name", ORDER)
def test_each_broker_has_a_compose_file_with_the_launcher_ports(name: str) -> None:
    service = load(COMPOSE / f"{name}.yaml")["services"][name]
    assert service["image"].split(":")[1], "pin the image tag"
    assert service["healthcheck"]["test"]
    published = {}
    for binding in service["ports"]:
        host, host_port, container_port = binding.split(":")
        assert host == "127.0.0.1", "publish on loopback only, like the launcher"
        published[int(host_port)] = int(container_port)
    expected = {port for key, port in default_ports(name).items() if (name, key) not in INTERNAL}
    assert set(published) == expected
    assert all(host == container for host, container in published.items())


def test_the_all_stack_includes_every_broker() -> None:
    document = load(COMPOSE / "all.yaml")
    assert sorted(document["include"]) == sorted(f"{name}.yaml" for name in ORDER)
    assert {path.stem for path in FILES} == {*ORDER, "all"}
