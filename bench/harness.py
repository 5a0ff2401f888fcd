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


async def throughput(impls: list[Impl], runs: int, count: int,
                     payload: bytes) -> list[Series]:
    """Publish, then consume, ``count`` messages per impl per run, interleaved A/B/A/B."""
    publish = {i.name: Series("publish", i.name) for i in impls}
    consume = {i.name: Series("consume", i.name) for i in impls}
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


async def latency(impls: list[Impl], rate: int, seconds: float,
                  payload: bytes) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for impl in impls:
        topic = f"lat-{uuid.uuid4().hex[:8]}"
        await prepare(impl, topic)
        try:
            samples = await impl.latency(topic, rate, seconds, payload)
        except NotImplementedError:
            continue
        except Exception as exc:  # reported as a failed row; the other tables still count
            print(f"  latency run of {impl.name} failed: {exc!r}", flush=True)
            samples = []
        out[impl.name] = sorted(samples)
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


def report(broker: str, series: list[Series], lat: dict[str, list[float]],
           rss: dict[str, Any], *, count: int, size: int, runs: int,
           rate: int | None = None, seconds: float | None = None) -> str:
    lines = [f"# {broker}: unibus against the raw client", "",
             f"{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"{count:,} messages of {size} B per run, {runs} runs interleaved A/B/A/B; "
             "median (min-max) messages per second.", "",
             "| scenario | implementation | median | min | max | unibus / this |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    by = {(s.scenario, s.impl): s for s in series}
    for s in series:
        ours = by.get((s.scenario, "unibus"))
        ratio = "" if ours is None or s.impl == "unibus" else f"{ours.median / s.median:.2f}"
        lines.append(f"| {s.scenario} | {s.impl} | {s.median:,.0f} | {min(s.values):,.0f} | "
                     f"{max(s.values):,.0f} | {ratio} |")
    if lat:
        at = f" of {rate:,} msg/s for {seconds:g} s" if rate and seconds else ""
        lines += ["", f"End-to-end latency at a fixed rate{at} (ms):", "",
                  "| implementation | p50 | p99 | max | samples |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, samples in lat.items():
            if not samples:
                lines.append(f"| {name} | failed (see the run's output) | | | 0 |")
                continue
            lines.append(f"| {name} | {percentile(samples, 50) * 1e3:.2f} | "
                         f"{percentile(samples, 99) * 1e3:.2f} | {samples[-1] * 1e3:.2f} | "
                         f"{len(samples)} |")
    if "error" in rss:
        lines += ["", "Consumer memory:", "",
                  f"- the unibus consumer RSS run failed: {rss['error']}"]
    elif rss:
        lines += ["", "Consumer memory:", "",
                  f"- unibus consumer (child process, prefetch 1,000, publisher running "
                  f"concurrently) over {rss['messages']:,.0f} messages: RSS {rss['start']:.1f} "
                  f"MiB after connecting, peak {rss['peak']:.1f} MiB, growth "
                  f"{rss['growth']:.1f} MiB"]
    return "\n".join(lines) + "\n"


def write(broker: str, text: str, directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{broker}.md"
    path.write_text(text)
    return path


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]
