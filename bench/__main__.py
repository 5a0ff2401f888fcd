"""python -m bench [--broker NAME ...] [--quick] [--messages N] [--rss-messages N] [--size B]
[--runs R]"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench import harness, rss
from bench.impls.base import Impl
from bench.impls.unibus_impl import UnibusImpl

BROKERS = ("sqlite", "rabbitmq", "nats", "kafka", "pulsar", "sqs")
SCENARIOS = ("throughput", "latency", "rss")
#: How far the RSS run's publisher may run ahead of the consumer, per broker (0: no limit).
#: ElasticMQ keeps every message in its JVM heap: a million at once is not what it is sized for.
RSS_BACKLOG = {"sqs": 20_000}


def impls_for(broker: str, tmp: Path) -> list[Impl]:
    if broker == "sqlite":
        from bench.impls.raw_sqlite import RawSQLite, RawSQLiteAcks

        return [UnibusImpl(f"sqlite:///{tmp}/unibus.db"), RawSQLite(tmp / "raw.db"),
                RawSQLiteAcks(tmp / "raw-acks.db")]
    module = __import__(f"bench.impls.raw_{broker}", fromlist=["implementations"])
    found: list[Impl] = module.implementations()
    return found


async def bench_broker(broker: str, args: argparse.Namespace) -> None:
    payload = b"x" * args.size
    with tempfile.TemporaryDirectory() as tmp:
        impls = impls_for(broker, Path(tmp))
        for impl in impls:
            await impl.setup()
        try:
            print(f"{broker}: {args.messages:,} x {args.size} B, {args.runs} runs", flush=True)
            series: list[harness.Series] = []
            if "throughput" in args.only:
                series = await harness.throughput(impls, args.runs, args.messages, payload)
            lat: dict[str, list[list[float]]] = {}
            if "latency" in args.only:
                lat = await harness.latency(impls[:2], args.rate, args.seconds, payload,
                                            args.latency_runs)
            memory: dict[str, Any] = {}
            if ("rss" in args.only and args.rss_messages > 0
                    and isinstance(impls[0], UnibusImpl)):
                print(f"  consumer RSS over {args.rss_messages:,} messages", flush=True)
                try:
                    backlog = (args.rss_backlog if args.rss_backlog is not None
                               else RSS_BACKLOG.get(broker, 0))
                    memory = await rss.measure(impls[0], args.rss_messages, payload, backlog)
                except Exception as exc:  # the throughput tables are still worth writing
                    print(f"  consumer RSS run failed: {exc!r}", flush=True)
                    memory = {"error": repr(exc)}
        finally:
            for impl in impls:
                try:  # a broker restarted under the run must not cost the tables
                    await asyncio.wait_for(impl.teardown(), 60)
                except Exception as exc:
                    print(f"  teardown of {impl.name} failed: {exc!r}", flush=True)
    text = harness.report(broker, series, lat, memory, count=args.messages, size=args.size,
                          runs=args.runs, rate=args.rate, seconds=args.seconds)
    path = harness.write(broker if not args.quick else f"{broker}-quick", text, args.results)
    print(text)
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--broker", nargs="*", default=["sqlite"], choices=[*BROKERS, "all"])
    parser.add_argument("--messages", type=int, default=None,
                        help="messages per run (100,000; 5,000 with --quick)")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=None,
                        help="latency run length (10; 2 with --quick)")
    parser.add_argument("--results", type=Path, default=harness.RESULTS,
                        help="directory of the markdown reports")
    parser.add_argument("--rss-messages", type=int, default=None,
                        help="consumer RSS run (1,000,000; 20,000 with --quick; 0 skips)")
    parser.add_argument("--rss-backlog", type=int, default=None,
                        help="RSS run: publish at most this many messages ahead of the "
                        "consumer's acks (20,000 on sqs, else no limit)")
    parser.add_argument("--latency-runs", type=int, default=1,
                        help="interleaved latency runs per implementation (1)")
    parser.add_argument("--only", nargs="+", default=list(SCENARIOS), choices=SCENARIOS,
                        help="measure only these (the report holds only them: pair it with "
                        "--results to keep the full tables)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: small and fast")
    args = parser.parse_args()
    if args.quick:
        args.runs = 2
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    if args.messages is None:
        args.messages = 5_000 if args.quick else 100_000
    if args.rss_messages is None:
        args.rss_messages = 20_000 if args.quick else 1_000_000
    brokers = BROKERS if "all" in args.broker else args.broker
    for broker in brokers:
        asyncio.run(bench_broker(broker, args))


if __name__ == "__main__":
    main()
