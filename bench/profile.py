"""Profile unibus's publish or consume hot path on one broker with cProfile.

    python -m bench.profile --broker pulsar [--messages 5000] [--top 25] [--sort tottime]

Publishes ``messages`` through the same :class:`UnibusImpl` the benchmark uses (profiled),
then consumes them (profiled separately), and prints the functions that dominate each.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import uuid
from pathlib import Path

from bench.__main__ import impls_for


async def profile(broker: str, count: int, top: int, sort: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        impl = impls_for(broker, Path(tmp))[0]
        await impl.setup()
        try:
            topic = f"prof-{uuid.uuid4().hex[:8]}"
            await impl.prepare(topic, "bench")  # type: ignore[attr-defined]
            for scenario, run in (("publish", lambda: impl.publish(topic, count, b"x" * 200)),
                                  ("consume", lambda: impl.consume(topic, count))):
                profiler = cProfile.Profile()
                profiler.enable()
                await run()
                profiler.disable()
                print(f"\n=== {broker} {scenario} {count:,} messages, by {sort}")
                pstats.Stats(profiler).strip_dirs().sort_stats(sort).print_stats(top)
        finally:
            await impl.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--broker", default="sqlite")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args()
    asyncio.run(profile(args.broker, args.messages, args.top, args.sort))


if __name__ == "__main__":
    main()
