from pathlib import Path

import pytest

from .conftest import Run


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "unibus.yaml"
    path.write_text(text)
    return path


def test_valid_file_is_reported_with_what_it_asks(run: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "url: memory://\nrequirements: {replay: true, ordering: partition}\n")
    result = run(["config", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    assert "backend memory" in result.output
    assert "replay=True" in result.output
    assert "ordering=partition" in result.output


def test_requirement_the_backend_cannot_honour(run: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "url: memory://\nrequirements: {transactions: true}\n")
    result = run(["config", "validate", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: transactions=true is not available on memory")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("url: memory://\nrequirements: {delivery: twice}\n", "delivery"),
        ("url: memory://\nretries: 3\n", "retries"),
        ("url: [unclosed\n", "configuration"),
        ("url: carrier-pigeon://coop\n", "carrier-pigeon"),
        ("url: memory://?lease_timeout=-1\n", "lease_timeout"),
    ],
)
def test_invalid_files_name_the_problem(run: Run, tmp_path: Path, text: str,
                                        named: str) -> None:
    result = run(["config", "validate", str(write(tmp_path, text))])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert named in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_file(run: Run, tmp_path: Path) -> None:
    result = run(["config", "validate", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_without_a_file_the_environment_is_validated(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIBUS_URL", "memory://")
    monkeypatch.setenv("UNIBUS_REQUIREMENTS__PRIORITY", "true")
    result = run(["config", "validate"])
    assert result.exit_code == 1
    assert "priority=true" in result.output


def test_the_file_does_not_stay_in_the_environment(run: Run, tmp_path: Path) -> None:
    import os

    run(["config", "validate", str(write(tmp_path, "url: memory://\n"))])
    assert "UNIBUS_CONFIG" not in os.environ
