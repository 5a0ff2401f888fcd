"""Settling deliveries: ack, nack with attempt counts, redelivery, dead letters."""

from __future__ import annotations

import pytest

import unibus
from unibus import deadletter
from unibus.testing._base import ContractBase


class SettlementContract(ContractBase):
    async def test_nack_redelivers_with_growing_attempt(self, bus: unibus.Bus, topic: str) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        message = unibus.Message(body=b"retry me", key="k")
        await bus.publish(topic, message)
        for attempt in (1, 2):
            [delivery] = await self.collect(consumer, 1, settle=None)
            assert delivery.message.id == message.id
            assert delivery.attempt == attempt
            await delivery.nack()
        [delivery] = await self.collect(consumer, 1, settle="ack")
        assert delivery.attempt == 3
        await self.assert_quiet(consumer)

    async def test_a_delivery_is_settled_exactly_once(self, bus: unibus.Bus, topic: str) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        await bus.publish(topic, unibus.Message(body=b"once"))
        [delivery] = await self.collect(consumer, 1, settle=None)
        assert not delivery.settled
        await delivery.ack()
        for settle in (delivery.ack(), delivery.nack(), delivery.dead_letter("late")):
            with pytest.raises(unibus.AlreadySettledError):
                await settle
        await self.assert_quiet(consumer)

    async def test_unsettled_messages_are_redelivered_after_close(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        group = f"{topic}-g"
        first = await bus.consumer(topic, group=group)
        messages = [unibus.Message(body=f"m{i}".encode(), key=f"k{i}") for i in range(3)]
        await bus.publish_many(topic, messages)
        taken = await self.collect(first, 3, settle=None)
        await taken[0].ack()
        await first.close(drain_timeout=0)
        second = await bus.consumer(topic, group=group)
        again = await self.collect(second, 2, timeout=self.redelivery_timeout)
        assert sorted(self.ids(again)) == sorted(self.ids(taken[1:]))
        assert all(d.attempt >= 2 for d in again), [d.attempt for d in again]
        await self.assert_quiet(second)

    async def test_delayed_nack_does_not_block_other_messages(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        slow = unibus.Message(body=b"slow", key="a")
        await bus.publish(topic, slow)
        [delivery] = await self.collect(consumer, 1, settle=None)
        await delivery.nack(delay=5.0)
        others = [unibus.Message(body=f"o{i}".encode(), key=f"b{i}") for i in range(3)]
        await bus.publish_many(topic, others)
        got = await self.collect(consumer, 4)
        assert self.ids(got)[-1] == slow.id, "the delayed retry came after the other messages"
        assert sorted(self.ids(got)[:3]) == sorted(m.id for m in others)
        assert got[-1].attempt == 2

    async def test_dead_letter_keeps_message_and_failure_context(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        group = f"{topic}-g"
        consumer = await bus.consumer(topic, group=group)
        message = unibus.Message(body=b"poison", key="k1", headers={"tenant": "acme"})
        await bus.publish(topic, message)
        [delivery] = await self.collect(consumer, 1, settle=None)
        await delivery.dead_letter("invalid payload: quantity < 0")
        dlq = bus.dead_letter_queue(topic, group)
        [dead] = await self.eventually(lambda: dlq.list(), what="the dead letter")
        assert dead.message.id == message.id
        assert dead.message.body == message.body
        assert dead.message.key == message.key
        assert dead.message.headers["tenant"] == "acme"
        assert dead.reason == "invalid payload: quantity < 0"
        assert dead.original_topic == topic
        assert dead.attempts == 1
        assert dead.dead_lettered_at is not None
        assert dead.message.headers[deadletter.FIRST_FAILURE]
        await self.assert_quiet(consumer)

    async def test_max_attempts_moves_message_to_dead_letter_queue(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        group = f"{topic}-g"
        consumer = await bus.consumer(topic, group=group, max_attempts=3)
        message = unibus.Message(body=b"always fails")
        await bus.publish(topic, message)
        for attempt in (1, 2, 3):
            [delivery] = await self.collect(consumer, 1, settle=None)
            assert delivery.attempt == attempt
            await delivery.nack()
        dlq = bus.dead_letter_queue(topic, group)
        [dead] = await self.eventually(lambda: dlq.list(), what="the dead letter")
        assert dead.message.id == message.id
        assert dead.attempts == 3
        assert "max_attempts=3" in dead.reason
        await self.assert_quiet(consumer)

    async def test_dead_letter_queue_get_replay_and_purge(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        group = f"{topic}-g"
        consumer = await bus.consumer(topic, group=group)
        messages = [unibus.Message(body=f"bad{i}".encode(), key=f"k{i}") for i in range(3)]
        await bus.publish_many(topic, messages)
        for delivery in await self.collect(consumer, 3, settle=None):
            await delivery.dead_letter("broken")
        dlq = bus.dead_letter_queue(topic, group)

        async def all_three() -> list[unibus.DeadLetter] | None:
            found = await dlq.list()
            return found if len(found) == 3 else None

        listed = await self.eventually(all_three, what="three dead letters")
        assert sorted(d.message.id for d in listed) == sorted(m.id for m in messages)
        assert len(await dlq.list()) == 3, "list() does not consume"
        target = messages[1]
        dead = await dlq.get(target.id)
        assert dead is not None
        assert dead.message.body == target.body
        assert await dlq.get("no-such-id") is None

        assert await dlq.replay([target.id]) == 1
        [replayed] = await self.collect(consumer, 1)
        assert replayed.message.id == target.id
        assert replayed.message.body == target.body
        assert replayed.message.headers[deadletter.REPLAY_COUNT] == "1"
        assert replayed.message.headers[deadletter.ORIGINAL_TOPIC] == topic
        remaining = await dlq.list()
        assert sorted(d.message.id for d in remaining) == sorted(
            m.id for m in messages if m.id != target.id
        )
        assert await dlq.purge() == 2
        assert await dlq.list() == []
        await self.assert_quiet(consumer)

    async def test_dead_letter_replay_reaches_the_group_that_dead_lettered_it(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        billing = await bus.consumer(topic, group=f"{topic}-billing")
        # With fan-out, a second group processes the message and must not see the replay;
        # without it, the group is the whole topic and the replay is checked on it alone.
        audit = await bus.consumer(topic, group=f"{topic}-audit") if caps.fan_out else None
        sent = unibus.Message(body=b"once", key="k", headers={"tenant": "t1"})
        await bus.publish(topic, sent)
        if audit is not None:
            await self.collect(audit, 1)
        [failed] = await self.collect(billing, 1, settle=None)
        await failed.dead_letter("card declined")
        dlq = bus.dead_letter_queue(topic, f"{topic}-billing")
        await self.eventually(dlq.list, what="the dead letter")
        assert await dlq.replay() == 1
        [again] = await self.collect(billing, 1)
        assert again.message.id == sent.id
        assert again.message.key == "k"
        assert again.message.headers["tenant"] == "t1"
        assert again.topic == topic
        assert again.attempt == 1, "a replay starts the message's attempts again"
        await self.assert_quiet(audit if audit is not None else billing)
        assert await dlq.list() == []
