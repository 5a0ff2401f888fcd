"""``unibus dlq`` on the embedded engine: list, show, replay, purge."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

import unibus
from unibus.cli.app import app

runner = CliRunner()


async def _dead_letter_three(url: str) -> list[str]:
    async with unibus.connect(url) as bus:
        consumer = await bus.consumer("orders", group="billing")
        receipts = await bus.publish_many("orders", [b"a", b"b", b"c"])
        for _ in range(3):
            delivery = await consumer.receive(timeout=5)
            await delivery.dead_letter("card declined")
        await consumer.close()
        return [r.message_id for r in receipts]


def test_list_show_replay_purge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bus.db"
    ids = asyncio.run(_dead_letter_three(url))
    listed = runner.invoke(app, ["dlq", "list", "orders", "--group", "billing", "--url", url])
    assert listed.exit_code == 0, listed.output
    assert "3 dead letter(s)" in listed.output
    assert "card declined" in listed.output
    shown = runner.invoke(app, ["dlq", "show", "orders", ids[0], "--group", "billing",
                                "--url", url])
    assert shown.exit_code == 0, shown.output
    assert "unibus-original-topic: orders" in shown.output
    refused = runner.invoke(app, ["dlq", "replay", "orders", "--group", "billing", "--url", url])
    assert refused.exit_code == 2
    replayed = runner.invoke(app, ["dlq", "replay", "orders", "--group", "billing", "--id",
                                   ids[1], "--url", url])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1" in replayed.output
    purged = runner.invoke(app, ["dlq", "purge", "orders", "--group", "billing", "--all",
                                 "--url", url])
    assert "purged 2" in purged.output
    missing = runner.invoke(app, ["dlq", "show", "orders", ids[0], "--group", "billing",
                                  "--url", url])
    assert missing.exit_code == 1
