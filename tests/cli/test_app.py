import importlib

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
