"""Resolve a broker's jars from Maven Central into a cache reused between runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from unibus.devstack._errors import DevStackError

__all__ = ["resolve"]

POMS = Path(__file__).with_name("poms")


def resolve(pom: str, cache: Path) -> Path:
    """Jars for ``poms/<pom>.xml`` in ``cache/<pom>/lib``; Maven runs only on a cold cache."""
    target = cache / pom
    lib = target / "lib"
    marker = target / ".complete"
    source = (POMS / f"{pom}.xml").read_text()
    if marker.exists() and marker.read_text() == source:
        return lib
    if shutil.which("mvn") is None:
        raise DevStackError(f"Maven (mvn) is needed to fetch the {pom} jars: apt-get install maven")
    if lib.exists():
        shutil.rmtree(lib)
    target.mkdir(parents=True, exist_ok=True)
    (target / "pom.xml").write_text(source)
    print(f"resolving {pom} jars with Maven into {lib} (first run only)", flush=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(target / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise DevStackError(f"Maven could not resolve the {pom} jars:\n{tail}")
    marker.write_text(source)
    return lib
