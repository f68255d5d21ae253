"""The position guard: the store only ever receives, per partition, the offset it needs next."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from processors.positions import PositionGuard, PositionLost


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int


class Broker:
    """What the probe asks: the first offset at or after one that holds a record."""

    def __init__(self, missing: dict[int, set[int]] | None = None) -> None:
        self.missing = missing or {}
        self.asked: list[tuple[int, int]] = []

    def __call__(self, partition: int, offset: int) -> int:
        self.asked.append((partition, offset))
        while offset in self.missing.get(partition, set()):
            offset += 1
        return offset


def recs(partition: int, *offsets: int) -> list[Rec]:
    return [Rec(partition, o) for o in offsets]


def offsets(records: list[Rec]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def test_contiguous_records_pass_and_the_broker_is_not_asked() -> None:
    broker = Broker()
    guard = PositionGuard(broker)
    guard.sought(0, 10)
    assert offsets(guard.admit(recs(0, 10, 11, 12) + recs(1, 0, 1))) == [(0, 10), (0, 11), (0, 12), (1, 0), (1, 1)]
    assert guard.next == {0: 13, 1: 2}
    assert broker.asked == []


def test_records_the_store_already_holds_are_dropped() -> None:
    guard = PositionGuard(Broker())
    guard.sought(0, 10)
    assert offsets(guard.admit(recs(0, 8, 9, 10))) == [(0, 10)]


def test_after_a_seek_prefetched_leftovers_are_dropped_until_the_needed_offset_comes() -> None:
    # faust-streaming/faust#221: records fetched before a rebalance or a swap still arrive first
    broker = Broker()
    guard = PositionGuard(broker)
    guard.sought(0, 10)
    assert guard.admit(recs(0, 40, 41, 42)) == []
    assert guard.admit(recs(0, 43)) == []
    assert offsets(guard.admit(recs(0, 10, 11))) == [(0, 10), (0, 11)]
    assert broker.asked == [(0, 10)]  # asked once for the place, not once per leftover
    assert guard.holes == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_skip_in_normal_flow_is_read_again_from_the_store_position(caplog: pytest.LogCaptureFixture) -> None:
    guard = PositionGuard(Broker())
    guard.sought(0, 10)
    assert offsets(guard.admit(recs(0, 10, 11))) == [(0, 10), (0, 11)]
    with caplog.at_level(logging.WARNING, logger="careledger.processor"):
        assert guard.admit(recs(0, 15, 16)) == []  # never applied past the gap
    assert guard.take_reseeks() == {0: 12}
    assert guard.take_reseeks() == {}  # taken once
    assert "the stream gave offset 15 but the store needs 12" in caplog.text
    assert guard.admit(recs(0, 17)) == []  # still in flight before the seek takes effect: dropped
    assert offsets(guard.admit(recs(0, 12, 13))) == [(0, 12), (0, 13)]
    assert guard.next[0] == 14 and guard.reseeks == 1


def test_the_group_offset_overriding_the_store_seek_is_sought_again() -> None:
    # faust's recovery seeks every partition to the consumer group's committed offsets AFTER the
    # worker sought to the store's: a store emptied by hand sees the stream start at 5000, not 0
    clock = Clock()
    guard = PositionGuard(Broker(), clock=clock)
    guard.sought(0, 0)
    assert guard.admit(recs(0, 5000, 5001)) == []  # could still be leftovers from before the seek
    assert guard.take_reseeks() == {}
    clock.now += PositionGuard.RESEEK_AFTER_S + 1
    assert guard.admit(recs(0, 5002)) == []
    assert guard.take_reseeks() == {0: 0}
    assert offsets(guard.admit(recs(0, 0, 1))) == [(0, 0), (0, 1)]


def test_a_redelivery_after_a_seek_that_skipped_the_needed_offset_is_sought_again() -> None:
    # the stream goes 40, 41 (leftovers), then back to 41 - someone else's seek, offset 10 will not
    # come by itself
    guard = PositionGuard(Broker())
    guard.sought(0, 10)
    assert guard.admit(recs(0, 40, 41)) == []
    assert guard.admit(recs(0, 41, 42)) == []
    assert guard.take_reseeks() == {0: 10}


def test_a_skip_anywhere_in_a_batch_keeps_the_rest_of_the_batch_in_order() -> None:
    guard = PositionGuard(Broker())
    guard.sought(0, 0)
    assert offsets(guard.admit(recs(1, 0) + recs(0, 0, 5) + recs(1, 1))) == [(1, 0), (0, 0), (1, 1)]
    assert guard.take_reseeks() == {0: 1}


def test_seeking_again_without_progress_ends_in_a_restart() -> None:
    guard = PositionGuard(Broker())
    guard.sought(0, 10)
    for _ in range(PositionGuard.MAX_RESEEKS):
        guard.admit(recs(0, 30))
        guard.admit(recs(0, 20))  # back, but never to 10
    with pytest.raises(PositionLost, match="seeks back to it did not bring it"):
        guard.admit(recs(0, 19))


def test_a_hole_on_the_broker_is_let_through_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    # control records of a transactional producer at 12 and 13, say
    broker = Broker({0: {12, 13}})
    guard = PositionGuard(broker)
    guard.sought(0, 10)
    with caplog.at_level(logging.ERROR, logger="careledger.processor"):
        assert offsets(guard.admit(recs(0, 10, 11, 14, 15))) == [(0, 10), (0, 11), (0, 14), (0, 15)]
    assert guard.holes == 1
    assert "partition 0: offsets 12..13 hold no record" in caplog.text
    assert guard.next[0] == 16


def test_an_empty_store_on_a_topic_trimmed_by_retention_starts_at_the_first_record() -> None:
    broker = Broker({0: set(range(0, 500))})
    guard = PositionGuard(broker)
    guard.sought(0, 0)  # an empty store seeks to 0; the log starts at 500
    assert offsets(guard.admit(recs(0, 500, 501))) == [(0, 500), (0, 501)]
    assert guard.holes == 1


def test_a_record_beyond_a_hole_is_judged_from_the_hole_end() -> None:
    broker = Broker({0: {12}})
    guard = PositionGuard(broker)
    guard.sought(0, 12)
    assert guard.admit(recs(0, 30)) == []  # a leftover beyond the hole: a seek is pending
    assert offsets(guard.admit(recs(0, 13))) == [(0, 13)]
    assert guard.holes == 1
    assert broker.asked == [(0, 12), (0, 13)]


def test_a_hole_is_accepted_while_a_seek_is_pending_only_where_the_broker_says_so() -> None:
    broker = Broker({0: {12}})
    guard = PositionGuard(broker)
    guard.sought(0, 10)
    assert guard.admit(recs(0, 50)) == []  # leftover
    assert offsets(guard.admit(recs(0, 10, 11, 13))) == [(0, 10), (0, 11), (0, 13)]
    assert guard.holes == 1


def test_an_unanswered_probe_never_counts_as_a_hole() -> None:
    guard = PositionGuard(lambda partition, offset: None)
    guard.sought(0, 10)
    assert guard.admit(recs(0, 11, 11)) == []
    assert guard.take_reseeks() == {0: 10} and guard.holes == 0


def test_a_partition_nobody_sought_takes_the_streams_word_and_revoked_ones_are_forgotten() -> None:
    guard = PositionGuard(Broker())
    assert offsets(guard.admit(recs(3, 7, 8))) == [(3, 7), (3, 8)]
    guard.sought(0, 10)
    guard.forget([0, 3])
    assert guard.next == {}
    assert offsets(guard.admit(recs(0, 99))) == [(0, 99)]


def test_leftovers_without_end_are_sought_again_instead_of_stalling() -> None:
    # the broker said offset 10 exists, then retention deleted it: the re-read starts further on and
    # every record looks like a leftover; after a while the partition is sought again (the probe
    # then finds the hole)
    clock = Clock()
    guard = PositionGuard(Broker(), clock=clock)
    guard.sought(0, 10)
    assert guard.admit(recs(0, *range(20, 25))) == []
    clock.now += PositionGuard.RESEEK_AFTER_S + 1
    assert guard.admit(recs(0, 25)) == []
    assert guard.take_reseeks() == {0: 10}
