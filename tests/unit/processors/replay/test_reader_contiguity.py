"""The log reader yields every offset once even when the client skips records (the kafka-python
position bugs it guards against), and accepts a real hole only after reading it twice."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from careledger.settings import Settings
from processors.replay import reader


class SkippingConsumer:
    """Serves ``records[p]`` (offsets) two per poll; skips ``skip`` offsets once when a
    partition's position reaches ``at``; ``holes`` are offsets that hold no record at all."""

    def __init__(self, ends: dict[int, int], skip_at: dict[int, tuple[int, int]], holes: set[tuple[int, int]]):
        self.offsets = {p: [o for o in range(end) if (p, o) not in holes] for p, end in ends.items()}
        self.positions: dict[int, int] = {}
        self.skip_at = dict(skip_at)
        self.seeks: list[tuple[int, int]] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.topic = tps[0].topic

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp.partition] = offset
        self.seeks.append((tp.partition, offset))

    def pause(self, tp: TopicPartition) -> None:
        self.positions[tp.partition] = 10**9

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp.partition]

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        out = {}
        for p, pos in self.positions.items():
            if p in self.skip_at and pos >= self.skip_at[p][0]:
                pos = self.positions[p] = pos + self.skip_at.pop(p)[1]  # the client loses records
            batch = [o for o in self.offsets[p] if o >= pos][:2]
            if batch:
                out[TopicPartition(self.topic, p)] = [SimpleNamespace(offset=o, timestamp=0, key=None, value=b"",
                                                                      headers=[])
                                                      for o in batch]
                self.positions[p] = batch[-1] + 1
            else:
                self.positions[p] = max(pos, len(self.offsets[p]) and self.offsets[p][-1] + 1)
        return out

    def close(self) -> None:
        pass


def read_all(monkeypatch: pytest.MonkeyPatch, consumer: SkippingConsumer, ends: dict[int, int]) -> list[tuple[int, int]]:
    monkeypatch.setattr(reader, "make_consumer", lambda *a, **k: consumer)
    settings = dataclasses.replace(Settings.from_env())
    got = [(r.partition, r.offset) for chunk in reader.read_log(settings, {}, ends, stall_timeout_s=5)
           for r in chunk]
    return got


def test_records_the_client_skipped_are_read_again(monkeypatch):
    ends = {0: 20, 1: 9}
    consumer = SkippingConsumer(ends, skip_at={0: (6, 5), 1: (7, 2)}, holes=set())  # p1: loses its tail
    got = read_all(monkeypatch, consumer, ends)
    assert sorted(got) == [(p, o) for p in ends for o in range(ends[p])]
    assert len(got) == len(set(got))
    assert (0, 6) in consumer.seeks and (1, 8) in consumer.seeks  # sought back to the first one missing


def test_a_real_hole_is_accepted_after_a_second_look(monkeypatch):
    ends = {0: 12}
    consumer = SkippingConsumer(ends, skip_at={}, holes={(0, 4), (0, 5)})
    got = read_all(monkeypatch, consumer, ends)
    assert got == [(0, o) for o in range(12) if o not in (4, 5)]
    assert consumer.seeks.count((0, 4)) == 1
