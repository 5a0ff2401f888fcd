"""Which offsets of a partition are settled, what may be committed, and delivery marks.

Deliveries are settled out of order by concurrent handlers; only the contiguous settled
prefix is committed, so a crash never skips an unsettled message. Kafka counts no
deliveries, so the commit metadata also carries a *delivery mark* ``u1:<hi>:<rounds>``:
offsets below ``hi`` (and at or above the committed offset) were already handed out
``rounds`` times. The next owner of the partition adds ``rounds`` to their attempt.
"""

from __future__ import annotations

import collections
from typing import Any

__all__ = ["PartitionOffsets", "parse_mark"]

_PREFIX = "u1:"


def parse_mark(metadata: str | None) -> tuple[int, int]:
    """(hi, rounds) from commit metadata; (0, 0) when there is no mark."""
    if not metadata or not metadata.startswith(_PREFIX):
        return 0, 0
    try:
        hi, rounds = metadata[len(_PREFIX):].split(":")
        return int(hi), int(rounds)
    except ValueError:
        return 0, 0


class PartitionOffsets:
    """Offsets of one assigned partition since it was assigned (or sought).

    Deliveries keep a reference to the object of their partition: once the partition is
    revoked or sought, ``live`` turns false and settling them changes nothing (their
    records come again), without a lookup per settle.
    """

    def __init__(self, committed: int, metadata: str | None = None, *, tp: Any = None,
                 epoch: int = 0) -> None:
        self.tp = tp
        self.epoch = epoch
        self.live = True
        self.committed = committed  # last offset committed to the group
        self.position = committed  # next offset after the last one handed out
        # Handed out and not yet committable, ascending; and the ones of them settled out of
        # order. (Public for the consumer's ack, which inlines settle's in-order case.)
        self.pending: collections.deque[int] = collections.deque()
        self.done: set[int] = set()
        hi, rounds = parse_mark(metadata)
        # What earlier owners handed out: [committed, hi) was delivered `rounds` times.
        self.prior_hi, self.prior_rounds = (hi, rounds) if hi > committed else (0, 0)
        self.mark_hi, self.mark_rounds = self.prior_hi, self.prior_rounds

    def earlier_deliveries(self, offset: int) -> int:
        """How often earlier owners handed out ``offset`` without it being committed."""
        return self.prior_rounds if offset < self.prior_hi else 0

    def hand_out(self, offset: int) -> None:
        self.pending.append(offset)
        self.position = max(self.position, offset + 1)

    def hand_out_many(self, offsets: list[int]) -> None:
        """``hand_out`` for each of ``offsets`` (ascending, as a fetch returns them)."""
        if offsets:
            self.pending.extend(offsets)
            self.position = max(self.position, offsets[-1] + 1)

    def settle(self, offset: int) -> None:
        pending = self.pending
        if not self.done and pending and pending[0] == offset:
            pending.popleft()  # settled in order, the common case
            return
        self.done.add(offset)
        while pending and pending[0] in self.done:
            self.done.discard(pending.popleft())

    def is_pending(self, offset: int) -> bool:
        return offset in self.pending and offset not in self.done

    def unsettled_before(self, offset: int) -> bool:
        """Is a delivery earlier than ``offset`` still unsettled?"""
        return bool(self.pending) and self.pending[0] < offset

    def commit_offset_with(self, extra: set[int]) -> int:
        """The commit offset if the offsets in ``extra`` were settled too."""
        for offset in self.pending:
            if offset not in self.done and offset not in extra:
                return offset
        return self.position

    @property
    def commit_offset(self) -> int:
        """Everything below this offset is settled."""
        return self.pending[0] if self.pending else self.position

    @property
    def needs_mark(self) -> bool:
        """Were offsets handed out beyond the last recorded mark?"""
        return self.position > self.mark_hi

    def new_mark(self) -> None:
        """Record that everything up to ``position`` has been handed out once more."""
        overlap = self.commit_offset < self.prior_hi
        self.mark_rounds = self.prior_rounds + 1 if overlap else 1
        self.mark_hi = self.position

    def metadata(self) -> str:
        offset = self.commit_offset
        if self.mark_hi <= offset:
            return ""
        return f"{_PREFIX}{self.mark_hi}:{self.mark_rounds}"

    @property
    def dirty(self) -> bool:
        return self.commit_offset != self.committed
