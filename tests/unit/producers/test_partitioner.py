"""The caching partitioner picks exactly the partitions of kafka-python's default partitioner."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from producers.partitioner import KeyCachingPartitioner


@dataclass
class Metadata:
    """The two questions a partitioner asks of kafka-python's ClusterMetadata."""

    partitions: int

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions)) if topic == "t" else None

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions_for_topic(topic)


@given(keys=st.lists(st.binary(max_size=40), min_size=1, max_size=30),
       counts=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=3))
def test_same_partition_as_the_default_whatever_the_partition_count(keys: list[bytes], counts: list[int]) -> None:
    cached, default = KeyCachingPartitioner(max_keys=7), DefaultPartitioner()
    for count in counts:  # partitions added: the cache holds hashes, not partitions
        cluster = Metadata(count)
        for key in keys + keys:
            assert cached.partition("t", None, key, None, None, cluster) == \
                default.partition("t", None, key, None, None, cluster)


def test_partitions_of_the_java_client() -> None:
    """Keys and murmur2 values of Kafka's own UtilsTest.testMurmur2 (Java), as partitions of 12:
    a regression in the hash would move every person's events to other partitions."""
    java_hashes = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                   b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
                   b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    partitioner, cluster = KeyCachingPartitioner(), Metadata(12)
    for key, java_hash in java_hashes.items():
        assert partitioner.partition("t", None, key, None, None, cluster) == (java_hash & 0x7FFFFFFF) % 12


def test_unkeyed_messages_and_unknown_topics_behave_as_the_default() -> None:
    partitioner, cluster = KeyCachingPartitioner(), Metadata(3)
    assert partitioner.partition("t", None, None, None, None, cluster) in {0, 1, 2}
    try:
        partitioner.partition("missing", None, b"k", None, None, cluster)
    except ValueError as exc:
        assert "missing" in str(exc)
    else:
        raise AssertionError("an unknown topic must raise")
