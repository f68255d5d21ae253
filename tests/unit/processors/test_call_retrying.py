"""Waiting out an unavailable store: transient errors are retried with capped backoff (at start,
processors/worker.py, and for every batch, processors/runner.py); anything else is raised."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from processors.runner import BatchRunner, call_retrying


def _flaky(failures: list[BaseException], result: str = "done"):  # noqa: ANN202
    def action() -> str:
        if failures:
            raise failures.pop(0)
        return result
    return action


def test_transient_errors_are_waited_out_with_capped_doubling_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    down = [ConnectionRefusedError("refused")] * 8
    with caplog.at_level(logging.WARNING, logger="careledger.processor"):
        assert call_retrying(_flaky(down), "store clickhouse", max_backoff_s=16, sleep=sleeps.append) == "done"
    assert sleeps == [0.5, 1, 2, 4, 8, 16, 16, 16]
    assert caplog.messages[0] == "store clickhouse unavailable (refused); retrying in 0.5s"


def test_other_errors_are_raised_at_once() -> None:
    sleeps: list[float] = []
    with pytest.raises(ValueError, match="bad event"):
        call_retrying(_flaky([ValueError("bad event")]), "store sql", sleep=sleeps.append)
    assert sleeps == []


def test_a_stopping_caller_gives_up_on_the_next_failure() -> None:
    sleeps: list[float] = []
    stopping = iter([False, True])
    with pytest.raises(ConnectionResetError):
        call_retrying(_flaky([ConnectionResetError()] * 5), "store sql", sleep=sleeps.append,
                      give_up=lambda: next(stopping))
    assert sleeps == [0.5]


class _StoreDownTwice:
    name = "sql"

    def __init__(self) -> None:
        self.calls = 0

    def apply_batch(self, records: list) -> int:  # noqa: ANN001
        self.calls += 1
        if self.calls <= 2:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return len(records)


def test_the_batch_runner_counts_its_retries() -> None:
    store = _StoreDownTwice()
    runner = BatchRunner(store, dead_letter=lambda *_: None, sleep=lambda _: None, keystore=object())
    assert runner._apply_with_retry([object(), object()]) == 2  # type: ignore[list-item]
    assert runner.stats.retries == 2 and store.calls == 3
