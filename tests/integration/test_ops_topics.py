"""``careledger topics create|describe`` against the real broker: partitions from the settings."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

from careledger.settings import Topics
from tests.support.pipeline import REPO_ROOT
from tests.support.servers import TestStack


def test_topics_create_uses_partitions_from_config_and_is_idempotent(stack: TestStack) -> None:
    ns = "t" + uuid.uuid4().hex[:10]
    settings = dataclasses.replace(stack.settings, topics=Topics.with_namespace(ns), event_partitions=5)
    env = {**os.environ, **settings.to_env()}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "careledger.cli", "topics", *args], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    missing = run("describe")
    assert missing.returncode == 1 and f"{ns}.careledger.events: missing" in missing.stdout
    first = run("create")
    assert first.returncode == 0, first.stderr
    assert f"created {ns}.careledger.events" in first.stdout
    assert f"{ns}.careledger.events: 5 partitions, replication 1" in first.stdout
    again = run("create")
    assert again.returncode == 0 and "all topics exist" in again.stdout
    assert run("describe").returncode == 0


def test_retention_is_forever_for_events_and_short_for_alerts_and_dead_letters(stack: TestStack) -> None:
    """Alerts and dead letters carry sensitive text in clear: they expire (configurable, also on
    topics that exist already); the events topic, the source of truth, never does."""
    from kafka import KafkaAdminClient

    from infra.kafka_broker import ensure_topics, topic_retentions

    ns = "r" + uuid.uuid4().hex[:10]
    settings = dataclasses.replace(stack.settings, topics=Topics.with_namespace(ns))
    ensure_topics(settings)

    def retention() -> dict[str, str | None]:
        admin = KafkaAdminClient(**settings.kafka_client_options())
        try:
            return topic_retentions(admin, [settings.topics.events, settings.topics.alerts, settings.topics.dlq])
        finally:
            admin.close()

    day = 86_400_000
    assert retention() == {settings.topics.events: "-1", settings.topics.alerts: str(30 * day),
                           settings.topics.dlq: str(90 * day)}
    changed = dataclasses.replace(settings, alerts_retention_days=7, dlq_retention_days=-1)
    assert ensure_topics(changed) == []  # nothing created: the existing topics are altered
    assert retention() == {settings.topics.events: "-1", settings.topics.alerts: str(7 * day),
                           settings.topics.dlq: "-1"}
    env = {**os.environ, **changed.to_env()}
    described = subprocess.run([sys.executable, "-m", "careledger.cli", "topics", "describe"], env=env,
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert f"{settings.topics.alerts}: 3 partitions, replication 1, retention 7 days" in described.stdout
    assert f"{settings.topics.events}: 12 partitions, replication 1, retention forever" in described.stdout
