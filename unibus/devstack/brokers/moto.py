"""moto server (SQS and SNS) from PyPI, run from the project's own environment."""

from __future__ import annotations

import sys
from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._errors import DevStackError
from unibus.devstack._spec import BrokerSpec, Launch

PORT = 4566


def spec() -> BrokerSpec:
    return BrokerSpec(name="moto", version=_version(), ports={"aws": PORT},
                      url=f"sqs://us-east-1?endpoint_url=http://127.0.0.1:{PORT}",
                      prepare=prepare, ready=ready, start_timeout=60.0)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("moto")
    except Exception:
        return "not installed"


def ready() -> bool:
    return _probes.http_ok(f"http://127.0.0.1:{PORT}/moto-api/data.json")


def prepare(state: Path, cache: Path) -> Launch:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise DevStackError("moto[server] is missing: run `uv sync --all-packages`") from exc
    state.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(PORT)]
    return Launch(argv=argv, env={"MOTO_ALLOW_NONEXISTENT_REGION": "true"}, cwd=state)
