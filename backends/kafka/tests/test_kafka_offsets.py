"""The contiguous-prefix commit and delivery marks (no broker needed)."""

from __future__ import annotations

from unibus_kafka._offsets import PartitionOffsets, parse_mark


def test_only_the_contiguous_settled_prefix_is_committed() -> None:
    offsets = PartitionOffsets(10)
    for offset in range(10, 15):
        offsets.hand_out(offset)
    offsets.settle(12)
    offsets.settle(13)
    assert offsets.commit_offset == 10, "10 and 11 are unsettled: a crash must not skip them"
    offsets.settle(10)
    assert offsets.commit_offset == 11
    offsets.settle(11)
    assert offsets.commit_offset == 14
    offsets.settle(14)
    assert offsets.commit_offset == 15


def test_gaps_in_offsets_do_not_stall_the_commit() -> None:
    # Transaction markers and compaction leave offsets that are never delivered.
    offsets = PartitionOffsets(0)
    for offset in (0, 2, 5):
        offsets.hand_out(offset)
    offsets.settle(5)
    offsets.settle(0)
    assert offsets.commit_offset == 2
    offsets.settle(2)
    assert offsets.commit_offset == 6


def test_commit_offset_with_hypothetical_settlements() -> None:
    offsets = PartitionOffsets(0)
    for offset in range(3):
        offsets.hand_out(offset)
    assert offsets.commit_offset_with({0, 1}) == 2
    assert offsets.commit_offset_with({1}) == 0
    assert offsets.commit_offset == 0, "nothing was settled for real"


def test_delivery_marks_count_earlier_hand_outs() -> None:
    first = PartitionOffsets(0)
    for offset in range(3):
        first.hand_out(offset)
    assert first.needs_mark
    first.new_mark()
    first.settle(0)
    assert first.metadata() == "u1:3:1"
    # A new owner reads the committed offset (1) and the mark.
    second = PartitionOffsets(first.commit_offset, first.metadata())
    assert second.earlier_deliveries(1) == 1
    assert second.earlier_deliveries(2) == 1
    assert second.earlier_deliveries(3) == 0
    for offset in (1, 2, 3):
        second.hand_out(offset)
    second.new_mark()
    assert parse_mark(second.metadata()) == (4, 2)
    third = PartitionOffsets(1, second.metadata())
    assert third.earlier_deliveries(1) == 2


def test_a_mark_behind_the_committed_offset_is_ignored() -> None:
    offsets = PartitionOffsets(10, "u1:5:3")
    assert offsets.earlier_deliveries(10) == 0
    assert offsets.metadata() == ""


def test_foreign_metadata_is_not_a_mark() -> None:
    assert parse_mark("written by another client") == (0, 0)
    assert parse_mark("u1:x:y") == (0, 0)
    assert parse_mark(None) == (0, 0)


def test_a_fetched_run_of_offsets_is_handed_out_at_once() -> None:
    offsets = PartitionOffsets(3)
    offsets.hand_out_many([3, 4, 6])
    offsets.hand_out_many([])
    assert offsets.position == 7
    offsets.settle(4)
    offsets.settle(6)
    assert offsets.commit_offset == 3
    offsets.settle(3)
    assert offsets.commit_offset == 7
