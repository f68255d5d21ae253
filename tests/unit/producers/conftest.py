"""Unit-test helpers for producers: settings under a temporary home and an in-memory producer.

The fake stands in for KafkaProducer only in unit tests; tests/integration uses the real broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError

from careledger.settings import Settings
from producers.publisher import EventPublisher


@dataclass
class FakeFuture:
    error: BaseException | None = None

    def add_errback(self, callback: Any) -> FakeFuture:
        if self.error is not None:
            callback(self.error)
        return self

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    headers: list[list[tuple[str, bytes]] | None] = field(default_factory=list)  # of each message in ``sent``
    fail_topics: set[str] = field(default_factory=set)
    closed: bool = False

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"",
             headers: list[tuple[str, bytes]] | None = None) -> FakeFuture:
        if topic in self.fail_topics:
            return FakeFuture(KafkaError("broker said no"))
        self.sent.append((topic, key, value))
        self.headers.append(headers)
        return FakeFuture()

    def traceparents(self, topic: str) -> list[str | None]:
        """The ``traceparent`` header of each message sent to ``topic`` (None: none)."""
        return [dict(h or {}).get("traceparent", b"").decode() or None
                for (t, _k, _v), h in zip(self.sent, self.headers, strict=True) if t == topic]

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def messages(self, topic: str) -> list[tuple[str | None, Any]]:
        return [(k.decode() if k else None, json.loads(v)) for t, k, v in self.sent if t == topic]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARELEDGER_HMAC_KEY", "unit-test-secret")
    monkeypatch.setenv("CARELEDGER_TOPIC_NAMESPACE", "")
    return Settings.from_env()


@pytest.fixture
def fake_producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def publisher(settings: Settings, fake_producer: FakeProducer) -> EventPublisher:
    return EventPublisher(settings, producer=fake_producer)


@pytest.fixture
def patched_publisher(monkeypatch: pytest.MonkeyPatch, fake_producer: FakeProducer) -> FakeProducer:
    """Make ``EventPublisher(settings)`` inside the commands use the fake producer."""
    import producers.csv_import
    import producers.ingest

    def factory(settings: Settings, **kwargs: Any) -> EventPublisher:
        return EventPublisher(settings, producer=fake_producer, **kwargs)

    monkeypatch.setattr(producers.ingest, "EventPublisher", factory)
    monkeypatch.setattr(producers.csv_import, "EventPublisher", factory)
    return fake_producer
