"""The foundation: the real broker, ClickHouse and PostgreSQL answer the clients careledger uses."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

import sqlalchemy as sa
from clickhouse_driver import Client
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from careledger.settings import Settings
from infra.kafka_broker import ensure_topics
from tests.support.servers import TestStack


def test_topics_are_created_idempotently(kafka_settings: Settings) -> None:
    assert ensure_topics(kafka_settings) == []  # the fixture created them already
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        partitions = {name: len(consumer.partitions_for_topic(name) or ()) for name in (
            kafka_settings.topics.events, kafka_settings.topics.dlq, kafka_settings.topics.alerts)}
    finally:
        consumer.close()
    assert partitions[kafka_settings.topics.events] == 12
    assert partitions[kafka_settings.topics.dlq] == 1
    assert partitions[kafka_settings.topics.alerts] == 3


def test_kafka_python_produces_and_a_group_consumes_and_commits(kafka_settings: Settings) -> None:
    topic = kafka_settings.topics.events
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap, acks="all",
                             enable_idempotence=True)
    for i in range(50):
        producer.send(topic, key=f"p{i % 7}".encode(), value=json.dumps({"i": i}).encode()).get(timeout=10)
    producer.flush()
    producer.close()

    group = "g-" + uuid.uuid4().hex[:6]
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_settings.kafka_bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    seen = []
    for message in consumer:
        seen.append(json.loads(message.value)["i"])
        if len(seen) == 50:
            break
    consumer.commit()
    committed = sum(consumer.committed(TopicPartition(topic, p)) or 0
                    for p in consumer.partitions_for_topic(topic))
    consumer.close()
    assert sorted(seen) == list(range(50))
    assert committed == 50


def test_a_faust_agent_consumes_from_the_broker(kafka_settings: Settings) -> None:
    import faust

    topic_name = kafka_settings.topics.events
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    for i in range(20):
        producer.send(topic_name, key=f"k{i}".encode(), value=json.dumps({"i": i}).encode())
    producer.flush()
    producer.close()

    app = faust.App("faust-smoke-" + uuid.uuid4().hex[:6], broker=f"kafka://{kafka_settings.kafka_bootstrap}",
                    store="memory://", web_enabled=False, topic_disable_leader=True,
                    consumer_auto_offset_reset="earliest", datadir=str(kafka_settings.home / "faust"))
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    received: list[tuple[int, int]] = []

    @app.agent(topic)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take_events(100, within=0.5):
            for event in batch:
                received.append((event.message.partition, event.message.offset))
            if len(received) >= 20:
                app._crash_or_stop = True
                await app.stop()

    async def run() -> None:
        await app.start()
        for _ in range(300):
            if len(received) >= 20:
                break
            await asyncio.sleep(0.1)
        await app.stop()

    asyncio.run(run())
    assert len(set(received)) == 20


def test_clickhouse_write_and_read(stack: TestStack, clickhouse_url: str) -> None:
    database = clickhouse_url.rsplit("/", 1)[1]
    client = Client(host="127.0.0.1", port=stack.clickhouse.port)
    client.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.execute(f"CREATE TABLE {database}.t (id String, v UInt32, d Date) "
                   "ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(d) ORDER BY id")
    client.execute(f"INSERT INTO {database}.t (id, v, d) VALUES", [
        ("a", 1, date(2024, 1, 1)), ("a", 1, date(2024, 1, 1)), ("b", 2, date(2024, 2, 1))])
    rows = client.execute(f"SELECT count(), sum(v) FROM {database}.t FINAL")  # noqa: S608 - generated name
    assert rows == [(2, 3)]


def test_postgres_through_sqlalchemy(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id text PRIMARY KEY, n int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:id, :n)"), [{"id": "a", "n": 1}, {"id": "b", "n": 2}])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(n) FROM t")).scalar() == 3
    engine.dispose()
