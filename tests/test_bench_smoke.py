"""The benchmark runner still runs end to end: ``python -m bench --broker sqlite --quick``
writes its markdown table with the unibus and raw rows. Nothing here is about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_sqlite_bench_writes_the_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--broker", "sqlite", "--quick", "--messages", "2000",
         "--rss-messages", "2000", "--seconds", "0.5", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "sqlite-quick.md").read_text()
    assert "2,000 messages of 200 B per run" in table
    for scenario in ("publish", "consume"):
        assert f"| {scenario} | unibus |" in table
        assert f"| {scenario} | raw sqlite |" in table
    assert "| unibus |" in table.split("End-to-end latency", 1)[1]
    assert "Consumer memory" in table
