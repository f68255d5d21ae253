"""Consumer lag per projection: events on ``careledger.events`` not yet in a store.

Measured from the log's end offsets and the offsets each store committed with its read model
(not from Kafka group offsets), so it says exactly what a reader of that store is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from careledger.settings import Settings
from projections.store import ProjectionStore


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


class LagProbe:
    def __init__(self, settings: Settings, stores: dict[str, ProjectionStore]) -> None:
        self.settings = settings
        self.stores = stores
        self._consumer = None

    def _log_bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(**self.settings.kafka_client_options(), enable_auto_commit=False,
                                           request_timeout_ms=10000)
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
                next_offset = positions[partition] + 1 if partition in positions else starts.get(partition, 0)
                per_partition[partition] = max(0, end - next_offset)
            report.per_partition[name] = per_partition
            report.per_projection[name] = sum(per_partition.values())
        return report

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
