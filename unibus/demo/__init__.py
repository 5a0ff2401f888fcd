"""The reference scenario: an e-commerce order pipeline (``unibus demo``).

    report = await run_demo("memory://", orders=24)
    report.counts()  # {'placed': 24, 'validated': 22, ..., 'dead-lettered': 3}

It runs on the embedded SQLite default with no server, in a fresh database each run; a URL
(``--url``, ``UNIBUS_URL`` or the config file) runs it on a real broker instead. The demo
deletes and re-creates its ``orders.*`` topics, so point it at a broker used for development.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import unibus
from unibus.config import DEFAULT_URL, load_settings
from unibus.demo.orders import Order, generate_orders
from unibus.demo.pipeline import MAX_ATTEMPTS, TOPICS, Observer, Pipeline
from unibus.demo.stats import DeadLetterRow, DemoReport, StageStats

__all__ = [
    "MAX_ATTEMPTS",
    "TOPICS",
    "DeadLetterRow",
    "DemoReport",
    "Observer",
    "Order",
    "Pipeline",
    "StageStats",
    "demo_url",
    "generate_orders",
    "run_demo",
]


@contextlib.contextmanager
def demo_url(url: str | None = None) -> Iterator[str]:
    """``url``, else the configured URL, else a fresh embedded database removed afterwards."""
    configured = url or load_settings().url
    if configured != DEFAULT_URL:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="unibus-demo-") as directory:
        yield f"sqlite:///{Path(directory) / 'demo.db'}"


async def run_demo(
    url: str | None = None,
    *,
    orders: int = 40,
    seed: int = 7,
    observer: Observer | None = None,
    timeout: float = 120.0,
) -> DemoReport:
    """Run the pipeline for ``orders`` generated orders and report how it ended."""
    if orders < 1:
        raise unibus.ConfigError(f"the demo needs at least 1 order, got {orders}")
    with demo_url(url) as chosen:
        async with unibus.connect(
            chosen, requirements={"consumer_groups": True, "fan_out": True}
        ) as bus:
            pipeline = Pipeline(bus, generate_orders(orders, seed), observer)
            return await pipeline.run(timeout=timeout)
