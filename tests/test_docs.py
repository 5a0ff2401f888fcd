"""The generated capability tables in the docs match the backends' declarations."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unibus.cli.matrix import Matrix, collect
from unibus.docs_gen import REGENERATE, main, render, splice, stale_files

ROOT = Path(__file__).resolve().parents[1]


def test_committed_docs_match_the_declarations() -> None:
    matrix = collect()
    stale = [str(p.relative_to(ROOT)) for p in stale_files(ROOT, matrix)]
    unloaded = "".join(f"; {u.backend} did not load here: {u}" for u in matrix.unavailable)
    assert not stale, f"stale generated docs {stale}: regenerate with `{REGENERATE}`{unloaded}"


def test_readme_carries_the_table() -> None:
    assert ROOT / "README.md" in render(ROOT)


def changed(matrix: Matrix) -> Matrix:
    first = matrix.columns[0]
    caps = dataclasses.replace(first.capabilities, priority=not first.capabilities.priority)
    return Matrix((dataclasses.replace(first, capabilities=caps), *matrix.columns[1:]))


def tree(tmp_path: Path, readme: str, page: str = "") -> Path:
    (tmp_path / "docs" / "backends").mkdir(parents=True)
    (tmp_path / "README.md").write_text(readme)
    if page:
        (tmp_path / "docs" / "backends" / "sqlite.md").write_text(page)
    return tmp_path


def test_a_changed_declaration_makes_every_copy_stale(tmp_path: Path) -> None:
    root = tree(tmp_path, "# x\n<!-- capabilities:start -->\n<!-- capabilities:end -->\n",
                "# sqlite\n<!-- capabilities:memory:start -->\n<!-- capabilities:memory:end -->\n")
    matrix = collect()
    main([str(root)])
    assert stale_files(root, matrix) == []
    assert set(stale_files(root, changed(matrix))) == {
        root / "docs" / "capabilities.md", root / "README.md",
        root / "docs" / "backends" / "sqlite.md"}


def test_check_fails_naming_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    root = tree(tmp_path, "no markers here\n")
    assert main([str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/capabilities.md" in err
    assert REGENERATE in err
    assert main([str(root)]) == 0
    assert main([str(root), "--check"]) == 0
    assert (root / "README.md").read_text() == "no markers here\n"


def test_named_markers_get_that_backends_table_only() -> None:
    page = ("intro\n<!-- capabilities:sqlite:start -->\nold\n<!-- capabilities:sqlite:end -->\n"
            "outro\n")
    out = splice(page, collect())
    assert out.startswith("intro\n<!-- capabilities:sqlite:start -->\n| capability | `sqlite`")
    assert out.endswith("<!-- capabilities:sqlite:end -->\noutro\n")
    assert "`memory`" not in out
    assert "old" not in out
    assert splice(out, collect()) == out


def test_unknown_backend_name_is_said_in_the_page() -> None:
    page = "<!-- capabilities:nope:start -->\n<!-- capabilities:nope:end -->\n"
    assert "No installed backend is named `nope`" in splice(page, collect())


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):]
    match = re.search(r"```python\n(.*?)```", quick_start, re.DOTALL)
    assert match is not None, "README's quick start has no python block"
    env = {**os.environ, "UNIBUS_URL": f"sqlite:///{tmp_path}/bus.db"}
    env.pop("UNIBUS_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", match.group(1)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["billing order 42 attempt 1", "[]"]


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_orders_example_runs(tmp_path: Path, url: str) -> None:
    env = {**os.environ, "UNIBUS_URL": url if url != "sqlite" else
           f"sqlite:///{tmp_path}/orders.db"}
    env.pop("UNIBUS_CONFIG", None)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "orders" / "pipeline.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    fulfilled, notifications, invalid, declined = done.stdout.splitlines()
    assert fulfilled == "fulfilled: order-1, order-3, order-5"
    assert notifications == "notifications sent: 15"
    assert invalid == ("dead letter: order-2 from orders.placed after 1 attempt(s): "
                       "quantity -1 is not positive")
    # The reason is the backend's own (the retry budget ran out).
    assert declined.startswith("dead letter: order-4 from orders.validated after 3 attempt(s)")
