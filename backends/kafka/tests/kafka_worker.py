"""A consumer process the broker tests SIGKILL at a chosen moment.

    python kafka_worker.py hold URL TOPIC GROUP COUNT
        receive COUNT deliveries, settle none, print "held", wait to be killed.
    python kafka_worker.py eos URL IN OUT GROUP TRANSACTIONAL_ID KILL_AT
        consume-transform-produce in transactions; the KILL_AT-th message is published but
        its transaction never commits: print "produced", wait to be killed.
"""

from __future__ import annotations

import asyncio
import sys

import unibus

_FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


async def hold(url: str, topic: str, group: str, count: int) -> None:
    bus = await unibus.connect(url, **_FAST_GROUP)
    consumer = await bus.consumer(topic, group=group, start="earliest")
    held = [await consumer.receive(timeout=60) for _ in range(count)]
    print("held", " ".join(d.message.id for d in held), flush=True)
    await asyncio.Event().wait()


async def eos(url: str, source: str, sink: str, group: str, txid: str, kill_at: int) -> None:
    bus = await unibus.connect(url, exactly_once=True, transactional_id=txid, **_FAST_GROUP)
    consumer = await bus.consumer(source, group=group, start="earliest")
    for n in range(1, kill_at + 1):
        delivery = await consumer.receive(timeout=60)
        async with consumer.transaction() as tx:  # type: ignore[attr-defined]
            out = unibus.Message(body=delivery.message.body.upper(),
                                 key=delivery.message.key,
                                 causation_id=delivery.message.id)
            await tx.publish(sink, out)
            if n == kill_at:
                print("produced", delivery.message.id, flush=True)
                await asyncio.Event().wait()
            await tx.ack(delivery)


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "hold":
        asyncio.run(hold(args[0], args[1], args[2], int(args[3])))
    elif mode == "eos":
        asyncio.run(eos(args[0], args[1], args[2], args[3], args[4], int(args[5])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
