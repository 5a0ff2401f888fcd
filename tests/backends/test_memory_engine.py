"""memory://: the same engine in process memory, shared by name, gone with its last bus."""

from __future__ import annotations

import unibus

from .helpers import quiet, take


async def test_buses_on_the_same_name_share_topics() -> None:
    async with unibus.connect("memory://shop") as reader, \
            unibus.connect("memory://shop") as writer, \
            unibus.connect("memory://other") as stranger:
        consumer = await reader.consumer("orders", group="g")
        elsewhere = await stranger.consumer("orders", group="g")
        await writer.publish("orders", b"42")
        [got] = await take(consumer, 1)
        assert got.message.body == b"42"
        await quiet(elsewhere, 0.3)


async def test_the_database_goes_with_its_last_bus() -> None:
    async with unibus.connect("memory://") as bus:
        await bus.publish("orders", b"old")
    async with unibus.connect("memory://") as bus:
        consumer = await bus.consumer("orders", group="g", start="earliest")
        await quiet(consumer, 0.3)


async def test_memory_declares_retention_is_not_durable() -> None:
    caps = unibus.connect("memory://").capabilities
    assert "lost" in caps.reason("retention")
    assert caps.replay
    assert caps.consumer_groups
    assert caps.fan_out
