"""down leaves no process behind; restart keeps data; bad names are refused."""

from __future__ import annotations

import pytest

from unibus.devstack import DevStack, DevStackError, _process


def test_down_leaves_no_process_and_up_brings_it_back() -> None:
    stack = DevStack()
    [before] = stack.status(["nats"])
    if before.pid is None:
        pytest.fail("nats must be running, started by `unibus dev up`")
    stack.down(["nats"])
    assert not _process.alive(before.pid)
    assert _process.group_members(before.pid) == []
    assert not _process.port_open(4222)
    [stopped] = stack.status(["nats"])
    assert stopped.state == "stopped"
    [after] = stack.up(["nats"])
    assert after.state == "running"
    assert after.pid != before.pid


def test_up_is_idempotent() -> None:
    stack = DevStack()
    [first] = stack.up(["nats"])
    [second] = stack.up(["nats"])
    assert first.pid == second.pid
    assert second.state == "running"


def test_unknown_broker_is_refused() -> None:
    with pytest.raises(DevStackError, match="unknown broker"):
        DevStack().up(["activemq"])
