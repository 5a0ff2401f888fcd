"""Peak RSS of a unibus consumer in a child process while the parent publishes into it.

The child connects, opens a consumer (prefetch 1,000), reports its RSS, then receives and acks
``count`` messages while a sampler thread records its RSS; the parent publishes the same
``count`` concurrently, so the consumer runs under backpressure. With a ``backlog`` the parent
stays at most that many messages ahead of the child's acks (the child reports them), for a
broker that should not hold the whole run at once.

The child, run by :func:`measure`: python -m bench.rss URL TOPIC COUNT JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

import psutil

import unibus
from bench.impls.unibus_impl import UnibusImpl, settle

MiB = 2**20


async def measure(impl: UnibusImpl, count: int, payload: bytes,
                  backlog: int = 0) -> dict[str, float]:
    """Run the child against ``impl``'s broker and return its RSS figures in MiB; publish
    at most ``backlog`` messages ahead of the child's acks (0: no limit)."""
    topic = f"rss-{__import__('uuid').uuid4().hex[:8]}"
    await impl.prepare(topic, "bench")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.rss", impl.url, topic, str(count),
        json.dumps([impl.options, impl.consumer_options, impl.concurrent_acks]),
        stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    ready = await asyncio.wait_for(child.stdout.readline(), 120)
    if not ready.startswith(b"ready"):
        raise RuntimeError(f"RSS child did not start: {ready!r}")
    acked = 0
    progress = asyncio.Event()
    report: list[bytes] = []

    async def follow(stdout: asyncio.StreamReader) -> None:
        nonlocal acked
        async for line in stdout:
            if line.startswith(b"acked "):
                acked = int(line.split()[1])
                progress.set()
            else:
                report.append(line)

    follower = asyncio.create_task(follow(child.stdout))
    try:
        if backlog <= 0:
            await impl.publish(topic, count, payload)
        else:
            step, sent = max(1, min(backlog // 2, 10_000)), 0
            while sent < count:
                while sent - acked >= backlog:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), 120)
                chunk = min(step, count - sent)
                await impl.publish(topic, chunk, payload)
                sent += chunk
        await asyncio.wait_for(follower, 1800)
    finally:
        if child.returncode is None and not follower.done():
            child.kill()  # the run failed: do not leave the child waiting for messages
            follower.cancel()
    if await child.wait() != 0 or not report:
        raise RuntimeError(f"RSS child failed with {child.returncode}")
    figures: dict[str, float] = json.loads(report[-1].decode())
    figures["backlog"] = backlog
    return figures


def high_water_mark() -> int:
    """Peak RSS of this process's own address space, in bytes (0 when unknown).

    Not ``getrusage().ru_maxrss``: Linux carries the parent's peak over a (v)fork + exec,
    so a child started by a large parent would report the parent's memory as its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def consume(url: str, topic: str, count: int, options: dict[str, Any],
                  consumer_options: dict[str, Any], concurrent_acks: bool) -> None:
    me = psutil.Process()
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, me.memory_info().rss)

    async with unibus.connect(url, **options) as bus:
        consumer = await bus.consumer(topic, group="bench", prefetch=1000, **consumer_options)
        start = me.memory_info().rss
        peak = start
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        print("ready", flush=True)
        got = 0
        while got < count:
            batch = await consumer.receive_batch(1000, timeout=60)
            await settle(batch, concurrent_acks)
            got += len(batch)
            print(f"acked {got}", flush=True)
        await consumer.close()
        stop.set()
        sampler.join()
    peak = max(peak, high_water_mark())
    print(json.dumps({
        "messages": count, "start": start / MiB, "peak": peak / MiB,
        "growth": (peak - start) / MiB,
    }), flush=True)


if __name__ == "__main__":
    url, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options, consumer_options, concurrent_acks = json.loads(sys.argv[4])
    asyncio.run(consume(url, topic, count, options, consumer_options, concurrent_acks))
