"""moto server (SQS and SNS) from PyPI, run from the project's own environment."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _probes
from unibus.devstack._errors import DevStackError
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"aws": 4566}


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    endpoint = f"http://127.0.0.1:{ports['aws']}"
    return BrokerSpec(name="moto", version=_version(), ports=dict(ports),
                      url=f"sqs://us-east-1?endpoint_url={endpoint}",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.http_ok, f"{endpoint}/moto-api/data.json"),
                      start_timeout=60.0)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("moto")
    except Exception:
        return "not installed"


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise DevStackError("moto[server] is missing: run `uv sync --all-packages`") from exc
    state.mkdir(parents=True, exist_ok=True)
    # moto's server, with its ReceiveMessage made atomic across request threads
    argv = [sys.executable, "-m", "unibus.devstack._moto_server", "-H", "127.0.0.1",
            "-p", str(ports["aws"])]
    return Launch(argv=argv, env={"MOTO_ALLOW_NONEXISTENT_REGION": "true"}, cwd=state)
