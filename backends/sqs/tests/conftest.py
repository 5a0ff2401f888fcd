from __future__ import annotations

import pytest
from sqs_support import ELASTICMQ, MOTO, require_server


@pytest.fixture(autouse=True)
def _broker_is_up(request: pytest.FixtureRequest) -> None:
    """Every test class names its server in ``url``; check that server answers."""
    url = getattr(request.cls, "url", "") or ""
    if MOTO in url:
        require_server(MOTO, "moto")
    elif ELASTICMQ in url or request.node.get_closest_marker("elasticmq"):
        require_server(ELASTICMQ, "elasticmq")
