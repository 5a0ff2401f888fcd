import importlib
import logging

import pytest

import unibus.cli
from unibus.cli import app

from .conftest import Run


def test_every_command_is_listed(run: Run) -> None:
    result = run(["--help"])
    assert result.exit_code == 0
    for command in ("capabilities", "publish", "consume", "config", "demo"):
        assert command in result.output


def test_dev_is_mounted_when_the_launcher_imports(run: Run) -> None:
    try:
        importlib.import_module("unibus.devstack.cli")
    except ImportError:
        launcher = False
    else:
        launcher = True
    names = {group.name for group in app.registered_groups}
    assert ("dev" in names) is launcher


def test_main_reports_unibus_errors_as_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["unibus", "publish", "t", "x", "--url", "nonsense"])
    with pytest.raises(SystemExit) as exit_info:
        unibus.cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: malformed broker URL 'nonsense'")
    assert "Traceback" not in err


def test_log_lines_go_to_stderr_at_the_chosen_level(run: Run) -> None:
    logger = logging.getLogger("unibus.test")
    result = run(["--log-level", "error", "capabilities", "--backend", "memory"])
    assert result.exit_code == 0
    assert logging.getLogger("unibus").getEffectiveLevel() == logging.ERROR
    assert not logger.isEnabledFor(logging.WARNING)


def test_unknown_log_level_is_a_usage_error(run: Run) -> None:
    result = run(["--log-level", "loud", "capabilities"])
    assert result.exit_code == 2
    assert "debug, info, warning" in result.output
