"""Interleaved A/B/A/B measurement, statistics and the markdown report."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench.impls.base import Impl

RESULTS = Path(__file__).with_name("results")


@dataclasses.dataclass
class Series:
    scenario: str
    impl: str
    values: list[float] = dataclasses.field(default_factory=list)
    unit: str = "msg/s"

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


async def measure(run: Awaitable[None], count: int) -> float:
    began = time.perf_counter()
    await run
    return count / (time.perf_counter() - began)


#: Messages each implementation publishes and consumes before the measured runs.
WARMUP = 1000


async def throughput(impls: list[Impl], runs: int, count: int,
                     payload: bytes) -> list[Series]:
    """Publish, then consume, ``count`` messages per impl per run, interleaved A/B/A/B."""
    publish = {i.name: Series("publish", i.name) for i in impls}
    consume = {i.name: Series("consume", i.name) for i in impls}
    # A round that is not measured: a broker's JVM compiling its hot paths, connections and
    # the clients' caches would otherwise fall on whichever implementation goes first.
    for impl in impls:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        await prepare(impl, topic)
        warm = min(count, WARMUP)
        await impl.publish(topic, warm, payload)
        await impl.consume(topic, warm)
    for run in range(runs):
        order = impls if run % 2 == 0 else list(reversed(impls))
        for impl in order:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await prepare(impl, topic)
            rate = await measure(impl.publish(topic, count, payload), count)
            publish[impl.name].values.append(rate)
            rate = await measure(impl.consume(topic, count), count)
            consume[impl.name].values.append(rate)
            print(f"  run {run + 1} {impl.name:10} publish {publish[impl.name].values[-1]:>9.0f}"
                  f" msg/s  consume {consume[impl.name].values[-1]:>9.0f} msg/s", flush=True)
    return [*publish.values(), *consume.values()]


async def prepare(impl: Impl, topic: str) -> None:
    hook = getattr(impl, "prepare", None)
    if hook is not None:
        await hook(topic, "bench")


async def latency(impls: list[Impl], rate: int, seconds: float, payload: bytes,
                  runs: int = 1) -> dict[str, list[list[float]]]:
    """Per impl, the sorted samples of each run; runs interleaved A/B, B/A, ..."""
    out: dict[str, list[list[float]]] = {}
    for run in range(runs):
        for impl in impls if run % 2 == 0 else list(reversed(impls)):
            topic = f"lat-{uuid.uuid4().hex[:8]}"
            await prepare(impl, topic)
            try:
                samples = await impl.latency(topic, rate, seconds, payload)
            except NotImplementedError:
                continue
            except Exception as exc:  # reported as a failed row; the other tables still count
                print(f"  latency run of {impl.name} failed: {exc!r}", flush=True)
                samples = []
            samples.sort()
            out.setdefault(impl.name, []).append(samples)
            if samples:
                print(f"  latency run {run + 1} {impl.name:10} p50 "
                      f"{percentile(samples, 50) * 1e3:8.2f} ms  p99 "
                      f"{percentile(samples, 99) * 1e3:8.2f} ms", flush=True)
    return out


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def report(broker: str, series: list[Series], lat: dict[str, list[list[float]]],
           rss: dict[str, Any], *, count: int, size: int, runs: int,
           rate: int | None = None, seconds: float | None = None) -> str:
    lines = [f"# {broker}: unibus against the raw client", "",
             f"{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."]
    if series:
        lines += ["", f"{count:,} messages of {size} B per run, {runs} runs interleaved "
                  "A/B/A/B; median (min-max) messages per second.", "",
                  "| scenario | implementation | median | min | max | unibus / this |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
    by = {(s.scenario, s.impl): s for s in series}
    for s in series:
        ours = by.get((s.scenario, "unibus"))
        ratio = "" if ours is None or s.impl == "unibus" else f"{ours.median / s.median:.2f}"
        lines.append(f"| {s.scenario} | {s.impl} | {s.median:,.0f} | {min(s.values):,.0f} | "
                     f"{max(s.values):,.0f} | {ratio} |")
    if lat:
        lines += latency_table(lat, rate, seconds)
    if "error" in rss:
        lines += ["", "Consumer memory:", "",
                  f"- the unibus consumer RSS run failed: {rss['error']}"]
    elif rss:
        ahead = (f", at most {rss['backlog']:,.0f} messages ahead of the acks"
                 if rss.get("backlog") else "")
        lines += ["", "Consumer memory:", "",
                  f"- unibus consumer (child process, prefetch 1,000, publisher running "
                  f"concurrently{ahead}) over {rss['messages']:,.0f} messages: "
                  f"RSS {rss['start']:.1f} MiB after connecting, peak {rss['peak']:.1f} MiB, "
                  f"growth {rss['growth']:.1f} MiB"]
    return "\n".join(lines) + "\n"


def latency_table(lat: dict[str, list[list[float]]], rate: int | None,
                  seconds: float | None) -> list[str]:
    """p50/p99/max per impl (the median over runs when there are several), and unibus's
    added p99 run by run against the first other impl."""
    at = f" of {rate:,} msg/s for {seconds:g} s" if rate and seconds else ""
    runs = max(len(r) for r in lat.values())
    over = f", median over {runs} interleaved runs" if runs > 1 else ""
    lines = ["", f"End-to-end latency at a fixed rate{at} (ms{over}):", "",
             "| implementation | p50 | p99 | max | samples |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, per_run in lat.items():
        done = [samples for samples in per_run if samples]
        if not done:
            lines.append(f"| {name} | failed (see the run's output) | | | 0 |")
            continue
        p50 = statistics.median(percentile(s, 50) for s in done) * 1e3
        p99 = statistics.median(percentile(s, 99) for s in done) * 1e3
        top = statistics.median(s[-1] for s in done) * 1e3
        failed = f" ({len(per_run) - len(done)} runs failed)" if len(done) < len(per_run) else ""
        lines.append(f"| {name} | {p50:.2f} | {p99:.2f} | {top:.2f} | "
                     f"{sum(map(len, done))}{failed} |")
    others = [name for name in lat if name != "unibus"]
    if runs > 1 and "unibus" in lat and others:
        pairs = [(ours, theirs) for ours, theirs in zip(lat["unibus"], lat[others[0]],
                                                        strict=False) if ours and theirs]
        added = [(percentile(a, 99) - percentile(b, 99)) * 1e3 for a, b in pairs]
        if added:
            lines += ["", f"unibus p99 minus {others[0]} p99, run by run (ms): "
                      + ", ".join(f"{d:+.2f}" for d in added)
                      + f"; median {statistics.median(added):+.2f}"]
    return lines


def write(broker: str, text: str, directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{broker}.md"
    path.write_text(text)
    return path


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]
