import json
import re

import pytest

from .conftest import Run


def test_published_message_is_consumed_with_its_envelope(run: Run, sqlite_url: str) -> None:
    sent = run(["publish", "orders.placed", '{"id": 42}', "--key", "42", "--header",
                "tenant=acme", "--type", "order.placed", "--url", sqlite_url])
    assert sent.exit_code == 0, sent.output
    message_id = re.search(r"published (\S+) to orders.placed", sent.output)
    assert message_id is not None

    got = run(["consume", "orders.placed", "--from", "earliest", "--count", "1",
               "--url", sqlite_url])
    assert got.exit_code == 0, got.output
    assert f"id={message_id.group(1)}" in got.output
    assert "key=42" in got.output
    assert "attempt=1" in got.output
    assert "type=order.placed" in got.output
    assert json.dumps({"tenant": "acme"}) in got.output
    assert '{"id": 42}' in got.output


def test_body_from_stdin(run: Run, sqlite_url: str) -> None:
    assert run(["publish", "t", "-", "--url", sqlite_url], input="from a pipe").exit_code == 0
    got = run(["consume", "t", "--from", "earliest", "--count", "1", "--url", sqlite_url])
    assert "from a pipe" in got.output


def test_unacknowledged_messages_come_back_with_the_next_attempt(
    run: Run, sqlite_url: str
) -> None:
    run(["publish", "t", "once", "--url", sqlite_url])
    common = ["consume", "t", "--group", "g", "--from", "earliest", "--count", "1",
              "--url", sqlite_url]
    first = run([*common, "--no-ack"])
    assert "attempt=1" in first.output
    second = run(common)
    assert second.exit_code == 0, second.output
    assert "attempt=2" in second.output
    third = run([*common, "--timeout", "0.5"])
    assert "no message within 0.5s" in third.output


def test_consume_stops_after_count(run: Run, sqlite_url: str) -> None:
    for n in range(3):
        run(["publish", "t", f"m{n}", "--url", sqlite_url])
    got = run(["consume", "t", "--from", "earliest", "--count", "2", "--url", sqlite_url])
    assert got.exit_code == 0
    assert got.output.count("attempt=") == 2


def test_url_comes_from_the_environment(run: Run, sqlite_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIBUS_URL", sqlite_url)
    run(["publish", "t", "via env"])
    got = run(["consume", "t", "--from", "earliest", "--count", "1", "--url", sqlite_url])
    assert "via env" in got.output


def test_bad_header_is_a_usage_error(run: Run) -> None:
    result = run(["publish", "t", "x", "--header", "no-equals-sign", "--url", "memory://"])
    assert result.exit_code == 2
    assert "key=value" in result.output


def test_bad_start_is_a_usage_error(run: Run) -> None:
    result = run(["consume", "t", "--from", "yesterday", "--url", "memory://"])
    assert result.exit_code == 2
    assert "earliest" in result.output


def test_unibus_errors_are_one_line_without_traceback(run: Run) -> None:
    for args in (["publish", "t", "x", "--url", "nonsense"],
                 ["publish", "t", "x", "--url", "carrier-pigeon://coop"],
                 ["publish", "t", "x", "--url", "memory://?no_such_option=1"],
                 ["publish", "t", "x", "--header", "ce_id=1", "--url", "memory://"],
                 ["consume", "t", "--url", "sqlite:////no/such/dir/bus.db"]):
        result = run(args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, (args, result.output)
        assert lines[0].startswith("error: ")
        assert "Traceback" not in result.output


def test_delayed_publish_arrives(run: Run, sqlite_url: str) -> None:
    sent = run(["publish", "t", "later", "--delay", "0.2", "--url", sqlite_url])
    assert sent.exit_code == 0, sent.output
    got = run(["consume", "t", "--from", "earliest", "--count", "1", "--timeout", "30",
               "--url", sqlite_url])
    assert "later" in got.output

