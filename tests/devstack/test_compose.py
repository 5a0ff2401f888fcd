"""The compose stacks cannot drift from the native launcher: same services, same ports."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unibus.devstack.brokers import ORDER, spec

COMPOSE = Path(__file__).parents[2] / "compose"
# Ports the launcher uses internally only (controller, bookie) need not be published.
INTERNAL = {("kafka", "controller"), ("pulsar", "bookie")}


@pytest.mark.parametrize("name", ORDER)
def test_each_broker_has_a_compose_file_with_the_launcher_ports(name: str) -> None:
    document = yaml.safe_load((COMPOSE / f"{name}.yaml").read_text())
    service = document["services"][name]
    assert service["image"]
    assert service["healthcheck"]["test"]
    published = {int(p.split(":")[1]) for p in service["ports"]}
    for port_name, port in spec(name).ports.items():
        if (name, port_name) in INTERNAL:
            continue
        assert port in published, f"{name}: port {port} ({port_name}) not published"
    for binding in service["ports"]:
        assert binding.startswith("127.0.0.1:"), "bind to loopback only"


def test_the_all_stack_includes_every_broker() -> None:
    document = yaml.safe_load((COMPOSE / "all.yaml").read_text())
    assert sorted(document["include"]) == sorted(f"{name}.yaml" for name in ORDER)
