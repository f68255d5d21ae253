"""careledger/clock.py: real time, or time shifted to CARELEDGER_NOW for drills."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from careledger import clock


@pytest.fixture(autouse=True)
def fresh_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


def test_without_a_pretend_time_the_clock_is_the_real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARELEDGER_NOW", raising=False)
    assert abs(clock.utc_now() - datetime.now(UTC)) < timedelta(seconds=1)


def test_a_pretend_time_starts_there_and_flows_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELEDGER_NOW", "2024-07-01T08:00:00+08:00")
    first = clock.utc_now()
    assert abs(first - datetime(2024, 7, 1, 0, 0, tzinfo=UTC)) < timedelta(seconds=1)
    assert clock.utc_now() >= first


def test_a_time_without_offset_is_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELEDGER_NOW", "2024-07-01T08:00:00")
    with pytest.raises(ValueError, match="CARELEDGER_NOW must be a time with its offset"):
        clock.utc_now()
