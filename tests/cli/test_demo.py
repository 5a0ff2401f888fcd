import re
from pathlib import Path

import pytest

from unibus.cli.demo import redacted
from unibus.demo import generate_orders, run_demo

from .conftest import Run

# 24 orders: 2 invalid (dead-lettered at once), 1 card that always fails (dead-lettered after
# 3 attempts: 2 retries), 3 cards that fail once (1 retry each).
EXPECTED = {"placed": 24, "validated": 22, "payment-processed": 21, "fulfilled": 21,
            "notified": 24 + 22 + 21 + 21, "retries": 5, "dead-lettered": 3}


def stage_row(output: str, group: str) -> list[str]:
    line = next(line for line in output.splitlines() if re.match(rf"\W*{group}\s+│", line))
    return re.findall(r"\d+", line)


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_demo_command_reports_counts_and_dead_letters(run: Run, url: str,
                                                      tmp_path: Path) -> None:
    args = ["demo", "--orders", "24"]
    if url != "sqlite":
        args += ["--url", url]
    result = run(args)
    assert result.exit_code == 0, result.output
    assert "sqlite:///" in result.output if url == "sqlite" else url in result.output
    #                                       in  ok  retries  to DLQ
    assert stage_row(result.output, "validation") == ["24", "22", "0", "2"]
    assert stage_row(result.output, "payment") == ["22", "21", "5", "1"]
    assert stage_row(result.output, "fulfilment") == ["21", "21", "0", "0"]
    assert stage_row(result.output, "notifications") == ["88", "88", "0", "0"]
    assert "dead-letter queue: 3 messages" in result.output
    assert result.output.count("invalid order: quantity") == 2
    assert "orders.validated" in result.output


async def test_counts_depend_only_on_the_number_of_orders() -> None:
    for seed in (1, 2):
        report = await run_demo("memory://", orders=24, seed=seed)
        assert report.counts() == EXPECTED


async def test_dead_letters_keep_the_failure_context() -> None:
    report = await run_demo("memory://", orders=24, seed=3)
    orders = {o.id: o for o in generate_orders(24, seed=3)}
    by_topic: dict[str, list[str]] = {}
    for row in report.dead_letters:
        assert row.order_id is not None
        by_topic.setdefault(row.topic, []).append(row.order_id)
        if row.topic == "orders.placed":
            assert orders[row.order_id].quantity < 0
            assert row.attempts == 1
            assert "invalid order" in row.reason
        else:
            assert row.topic == "orders.validated"
            assert row.attempts == 3
            assert orders[row.order_id].card.endswith("0002")
    assert sorted(len(v) for v in by_topic.values()) == [1, 2]


async def test_same_seed_same_failures() -> None:
    first = await run_demo("memory://", orders=12, seed=5)
    second = await run_demo("memory://", orders=12, seed=5)
    assert sorted(r.order_id or "" for r in first.dead_letters) == sorted(
        r.order_id or "" for r in second.dead_letters)


def test_bad_url_is_one_line(run: Run) -> None:
    result = run(["demo", "--url", "carrier-pigeon://coop"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no backend serves URL scheme 'carrier-pigeon'")


def test_passwords_are_not_shown() -> None:
    assert redacted("rabbitmq://guest:secret@host:5672/") == "rabbitmq://guest:***@host:5672/"
    assert redacted("sqlite:///tmp/bus.db") == "sqlite:///tmp/bus.db"
