"""Consumer lag per projection: events on ``careledger.events`` not yet in a store.

Measured from the log's end offsets and the offsets each store committed with its read model
(not from Kafka group offsets), so it says exactly what a reader of that store is missing.

Offsets that hold no record are not lag: a transactional producer (not careledger's own) leaves a
control record after each transaction, so a partition can end on offsets no store will ever
apply.  A small lag is therefore checked against the log (is there a record in between?) before
it is reported; the answer is remembered for that position, so an idle stack asks once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from careledger.settings import Settings
from processors.runtime.contracts import PositionSource


@dataclass
class LagReport:
    per_projection: dict[str, int] = field(default_factory=dict)
    per_partition: dict[str, dict[int, int]] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # projection -> why its store did not answer

    @property
    def total(self) -> int:
        """Events not yet reflected in *every* projection (the slowest one decides)."""
        return max(self.per_projection.values(), default=0)


#: a lag up to this many offsets may be control records only: it is checked against the log
MARKER_CHECK_MAX_LAG = 64
#: how long one such check may read before the lag is reported as it is
MARKER_CHECK_TIMEOUT_S = 5.0


class LagProbe:
    def __init__(self, settings: Settings, stores: dict[str, PositionSource]) -> None:
        self.settings = settings
        self.stores = stores
        self._consumer = None
        self._record_free: dict[tuple[int, int, int], bool] = {}  # (partition, start, end) -> no record

    def _log_bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(**self.settings.kafka_client_options(), enable_auto_commit=False,
                                           request_timeout_ms=10000, fetch_max_wait_ms=50,
                                           auto_offset_reset="earliest")  # a record deleted meanwhile: read on
        topic = self.settings.topics.events
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = self._consumer.end_offsets(tps)
        starts = self._consumer.beginning_offsets(tps)
        return ({tp.partition: off for tp, off in starts.items()},
                {tp.partition: off for tp, off in ends.items()})

    def measure(self) -> LagReport:
        starts, ends = self._log_bounds()
        report = LagReport(end_offsets=ends)
        for name, store in self.stores.items():
            try:
                positions = store.offsets()
            except Exception as exc:  # noqa: BLE001 - a store that is down is reported, not fatal
                report.unavailable[name] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            per_partition = {}
            for partition, end in ends.items():
                next_offset = positions[partition] + 1 if partition in positions else 0
                next_offset = max(next_offset, starts.get(partition, 0))  # deleted offsets: never applied
                lag = max(0, end - next_offset)
                if 0 < lag <= MARKER_CHECK_MAX_LAG and self._holds_no_record(partition, next_offset, end):
                    lag = 0
                per_partition[partition] = lag
            report.per_partition[name] = per_partition
            report.per_projection[name] = sum(per_partition.values())
        return report

    def _holds_no_record(self, partition: int, start: int, end: int) -> bool:
        """True when offsets ``[start, end)`` of ``partition`` hold no record (control records
        only); False when one does, or when the log did not tell within the timeout."""
        from kafka import TopicPartition

        key = (partition, start, end)
        if key not in self._record_free:
            if len(self._record_free) > 10_000:
                self._record_free.clear()
            assert self._consumer is not None  # opened by _log_bounds
            tp = TopicPartition(self.settings.topics.events, partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            deadline = time.monotonic() + MARKER_CHECK_TIMEOUT_S
            answer = None
            while answer is None and time.monotonic() < deadline:
                polled = self._consumer.poll(timeout_ms=200, max_records=1)
                if any(r.offset < end for records in polled.values() for r in records):
                    answer = False  # a record the store has not applied: real lag
                elif self._consumer.position(tp) >= end:
                    answer = True  # the client stepped over control records up to the end
            if answer is None:
                return False  # not decided: report the lag as it is, ask again next time
            self._record_free[key] = answer
        return self._record_free[key]

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
