"""Settings from the environment: the new knobs parse, round-trip to a child's environment and
refuse nonsense with a message naming the variable."""

from __future__ import annotations

import pytest

from careledger.settings import Settings
from infra.kafka_broker import retention_ms, topic_plan


@pytest.fixture(autouse=True)
def _home(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path))
    for name in ("CARELEDGER_INGEST_WORKERS", "CARELEDGER_ALERTS_RETENTION_DAYS", "CARELEDGER_DLQ_RETENTION_DAYS",
                 "CARELEDGER_TOWNS", "CARELEDGER_OCCURRED_AT_EARLIEST", "CARELEDGER_OCCURRED_AT_AHEAD_DAYS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_round_trip_through_a_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert (settings.ingest_workers, settings.alerts_retention_days, settings.dlq_retention_days) == (None, 30, 90)
    monkeypatch.setenv("CARELEDGER_INGEST_WORKERS", "3")
    monkeypatch.setenv("CARELEDGER_ALERTS_RETENTION_DAYS", "-1")
    changed = Settings.from_env()
    for name, value in changed.to_env().items():
        monkeypatch.setenv(name, value)
    again = Settings.from_env()
    assert (again.ingest_workers, again.alerts_retention_days) == (3, -1)


@pytest.mark.parametrize("bad", ["-2", "many", "1.5"])
def test_ingest_workers_must_be_auto_or_a_count(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CARELEDGER_INGEST_WORKERS", bad)
    with pytest.raises(ValueError, match="CARELEDGER_INGEST_WORKERS"):
        Settings.from_env()


def test_retention_plan_keeps_events_forever() -> None:
    settings = Settings.from_env()
    plan = topic_plan(settings)
    assert plan[settings.topics.events] == (settings.event_partitions, "-1")
    assert plan[settings.topics.alerts] == (3, str(30 * 86_400_000))
    assert plan[settings.topics.dlq] == (1, str(90 * 86_400_000))
    assert retention_ms(-1) == "-1" and retention_ms(0.5) == "43200000"


def test_towns_are_master_data_in_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert len(settings.towns) == 12 and settings.towns[0] == "锦屏街道" and "松岙镇" in settings.towns
    monkeypatch.setenv("CARELEDGER_TOWNS", " 城关镇，东城街道、西城镇 ")
    assert Settings.from_env().towns == ("城关镇", "东城街道", "西城镇")
    for name, value in Settings.from_env().to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env().towns == ("城关镇", "东城街道", "西城镇")


@pytest.mark.parametrize("bad", [" , ", "城关镇,城关镇"])
def test_towns_must_be_a_list_without_repeats(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CARELEDGER_TOWNS", bad)
    with pytest.raises(ValueError, match="CARELEDGER_TOWNS"):
        Settings.from_env()


def test_occurred_at_window_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert (settings.occurred_at_earliest.isoformat(), settings.occurred_at_ahead_days) == ("1949-10-01", 3)
    monkeypatch.setenv("CARELEDGER_OCCURRED_AT_EARLIEST", "2000-01-01")
    monkeypatch.setenv("CARELEDGER_OCCURRED_AT_AHEAD_DAYS", "0.5")
    changed = Settings.from_env()
    assert (changed.occurred_at_earliest.isoformat(), changed.occurred_at_ahead_days) == ("2000-01-01", 0.5)
    monkeypatch.setenv("CARELEDGER_OCCURRED_AT_EARLIEST", "2000")
    with pytest.raises(ValueError, match="CARELEDGER_OCCURRED_AT_EARLIEST"):
        Settings.from_env()
