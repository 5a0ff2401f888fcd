from __future__ import annotations

import pytest
from sqs_support import ELASTICMQ, MOTO, require_server


@pytest.fixture(autouse=True)
def _broker_is_up(request: pytest.FixtureRequest) -> None:
    """Fail (never skip) a test whose server does not answer: contract classes name it in
    ``url``, broker tests in their name (``sns`` tests run on moto)."""
    url = getattr(request.cls, "url", "") or ""
    module = request.module.__name__
    if MOTO in url or (module.endswith("broker") and "sns" in request.node.name):
        require_server(MOTO, "moto")
    elif ELASTICMQ in url or module.endswith("broker"):
        require_server(ELASTICMQ, "elasticmq")
