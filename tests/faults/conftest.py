"""Print the counts of every fault test that finished at the end of the run."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [str(value)
             for outcome in ("passed", "failed")
             for report in terminalreporter.stats.get(outcome, [])
             for name, value in getattr(report, "user_properties", ())
             if name == "faults"]
    if lines:
        terminalreporter.section("fault-test counts")
        for line in lines:
            terminalreporter.write_line(line)
