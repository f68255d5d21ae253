"""``careledger topics create|describe``: the careledger topics on any Kafka cluster.

Partitions (``CARELEDGER_EVENT_PARTITIONS``) and replication factor
(``CARELEDGER_REPLICATION_FACTOR``) come from the settings; the connection (several bootstrap
servers, SASL/TLS) is the one every careledger client uses (``Settings.kafka_client_options``).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    topics = sub.add_parser("topics", help="create or describe the careledger Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True)
    create = tsub.add_parser("create", help="create missing topics (idempotent; partitions/replication from config)")
    create.set_defaults(func=_create)
    describe = tsub.add_parser("describe", help="partitions and replicas of the careledger topics")
    describe.set_defaults(func=_describe)


def _create(_: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from careledger.settings import get_settings
    from infra.kafka_broker import ensure_topics

    settings = get_settings()
    try:
        created = ensure_topics(settings)
    except KafkaError as exc:
        print(f"careledger topics create: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for name in created:
        print(f"created {name}")
    if not created:
        print("all topics exist")
    return _describe(_)


def _days(retention_ms: str | None) -> str:
    if retention_ms is None:
        return "unknown"
    if int(retention_ms) < 0:
        return "forever"
    return f"{int(retention_ms) / 86_400_000:g} days"


def _describe(_: argparse.Namespace) -> int:
    from kafka import KafkaAdminClient

    from careledger.settings import get_settings
    from infra.kafka_broker import topic_retentions

    settings = get_settings()
    names = [settings.topics.events, settings.topics.dlq, settings.topics.alerts]
    admin = KafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        found = [n for n in names if n in existing]
        described = admin.describe_topics(found) if found else []
        retention = topic_retentions(admin, found)
    finally:
        admin.close()
    seen = set()
    for topic in described:  # kafka-python: "topic" (older) or "name" (metadata v10+)
        name = topic.get("topic") or topic.get("name")
        seen.add(name)
        parts = topic.get("partitions") or []
        replicas = {len(p.get("replicas") or p.get("replica_nodes") or []) for p in parts}
        print(f"{name}: {len(parts)} partitions, replication {','.join(map(str, sorted(replicas)))}, "
              f"retention {_days(retention.get(name))}")
    missing = [n for n in names if n not in seen]
    for name in missing:
        print(f"{name}: missing")
    return 1 if missing else 0
