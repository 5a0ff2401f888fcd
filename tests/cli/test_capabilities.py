import pytest

from unibus.cli import matrix
from unibus.errors import BackendNotInstalledError
from unibus.registry import backend_class

from .conftest import Run


def test_lists_every_installed_backend_with_each_capability(run: Run) -> None:
    result = run(["capabilities"])
    assert result.exit_code == 0, result.output
    for column in matrix.collect().columns:
        assert column.label.split()[0] in result.output
    for dimension in ("delivery", "ordering", "replay", "consumer groups", "dead-letter",
                      "delayed delivery", "max message size", "retention"):
        assert dimension in result.output


def test_one_backend_only(run: Run) -> None:
    result = run(["capabilities", "--backend", "memory", "--no-reasons"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "capability" in line)
    assert "memory" in header
    assert "sqlite" not in result.output


def test_options_change_the_declared_capabilities(run: Run) -> None:
    result = run(["capabilities", "--backend", "sqlite", "--markdown",
                  "--option", "max_message_size=2048"])
    assert result.exit_code == 0, result.output
    assert "| max message size | 2 KiB |" in result.output
    assert "`sqlite (max_message_size=2048)`" in result.output


def test_reasons_explain_what_a_backend_lacks(run: Run) -> None:
    caps = backend_class("memory").declare(backend_class("memory").Options())
    dimension, why = next(iter(caps.reasons.items()))
    result = run(["capabilities", "--backend", "memory"])
    assert why.split()[0] in result.output
    assert dimension.replace("_", " ") in result.output


def test_markdown_is_the_docs_table(run: Run) -> None:
    result = run(["capabilities", "--markdown"])
    assert result.exit_code == 0
    assert result.output.startswith("| capability | `memory` | `sqlite` |")


def test_unknown_backend_is_one_red_line(run: Run) -> None:
    result = run(["capabilities", "--backend", "carrier-pigeon"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: no backend serves URL scheme")
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_invalid_option_is_refused_with_the_option_named(run: Run) -> None:
    result = run(["capabilities", "--backend", "memory", "--option", "max_message_size=-1"])
    assert result.exit_code == 1
    assert "max_message_size" in result.output


def test_option_needs_a_backend(run: Run) -> None:
    result = run(["capabilities", "--option", "a=b"])
    assert result.exit_code == 2
    assert "--backend" in result.output


def test_a_backend_that_does_not_load_is_listed_with_its_install_command(
    monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    def without_kafka(scheme: str) -> object:
        if scheme.startswith("kafka"):
            raise BackendNotInstalledError(scheme, "unibus-kafka")
        return backend_class(scheme)

    monkeypatch.setattr(matrix, "backend_class", without_kafka)
    collected = matrix.collect()
    assert "kafka" not in collected.backends()
    [kafka] = [u for u in collected.unavailable if u.backend == "kafka"]
    assert "pip install unibus-kafka" in str(kafka)
    result = run(["capabilities"])
    assert result.exit_code == 0
    assert "pip install unibus-kafka" in result.output


def test_reasons_for_all_backends_on_request(run: Run) -> None:
    caps = backend_class("sqlite").declare(backend_class("sqlite").Options())
    why = next(iter(caps.reasons.values()))
    assert why not in run(["capabilities"]).output.replace("\n", " ")
    assert "--reasons" in run(["capabilities"]).output
    assert why[:40] in run(["capabilities", "--reasons"]).output
