"""The real servers integration tests run against, started once per test session.

One private stack (KRaft Kafka, ClickHouse, PostgreSQL) under a temporary ``CARELEDGER_HOME`` on
free loopback ports; every test gets its own topics (a namespace), PostgreSQL database and
ClickHouse database, so tests never see each other's data.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from pathlib import Path

from careledger.settings import Settings, Topics
from infra.clickhouse_server import ClickHouseServer
from infra.kafka_broker import KafkaBroker, ensure_topics
from infra.postgres_server import PostgresServer
from infra.process import free_port


@dataclass
class TestStack:
    __test__ = False  # a fixture type, not a test class

    settings: Settings
    kafka: KafkaBroker
    clickhouse: ClickHouseServer
    postgres: PostgresServer
    startup_seconds: dict[str, float]

    def fresh_settings(self, **overrides: object) -> Settings:
        """Settings on this stack with a new topic namespace (topics created) and SQLite file."""
        namespace = "t" + uuid.uuid4().hex[:10]
        home = self.settings.home / "tests" / namespace
        home.mkdir(parents=True)
        settings = dataclasses.replace(
            self.settings,
            home=home,
            topics=Topics.with_namespace(namespace),
            processor_group=f"{namespace}-processor",
            sql_url=f"sqlite:///{home / 'projections.sqlite3'}",
            **overrides,
        )
        ensure_topics(settings)
        return settings

    def fresh_pg_url(self) -> str:
        return self.postgres.create_database("t" + uuid.uuid4().hex[:12])

    def fresh_clickhouse_url(self) -> str:
        return self.clickhouse.url("t" + uuid.uuid4().hex[:12])

    def stop(self) -> None:
        self.kafka.stop()
        self.clickhouse.stop()
        self.postgres.stop()


def start_test_stack(home: Path) -> TestStack:
    kafka_port = free_port()
    controller_port = free_port()
    base = Settings.from_env()
    settings = dataclasses.replace(
        base,
        home=home,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        api_port=free_port(),
        event_partitions=12,
        sql_url=f"sqlite:///{home / 'projections.sqlite3'}",
        clickhouse_url=None,
        kafka_security={},
    )
    stack = TestStack(settings, KafkaBroker(settings), ClickHouseServer(settings), PostgresServer(settings), {})
    try:
        stack.startup_seconds["kafka"] = stack.kafka.start()
        stack.startup_seconds["clickhouse"] = stack.clickhouse.start()
        stack.startup_seconds["postgres"] = stack.postgres.start()
    except BaseException:
        stack.stop()
        raise
    return stack
