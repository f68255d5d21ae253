"""Waiting out an unavailable store: transient errors are retried with capped, jittered backoff (at
start, processors/worker.py, and for every batch, processors/runtime/apply.py); anything else is
raised."""

from __future__ import annotations

import logging

import pytest

from processors.runtime.retry import backoff_delay, call_retrying


def _flaky(failures: list[BaseException], result: str = "done"):  # noqa: ANN202
    def action() -> str:
        if failures:
            raise failures.pop(0)
        return result
    return action


def test_transient_errors_are_waited_out_with_capped_jittered_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    down = [ConnectionRefusedError("refused")] * 8
    with caplog.at_level(logging.WARNING, logger="careledger.processor"):
        assert call_retrying(_flaky(down), "store clickhouse", max_backoff_s=16, sleep=sleeps.append) == "done"
    ceilings = [0.5, 1, 2, 4, 8, 16, 16, 16]
    assert len(sleeps) == 8
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))
    assert caplog.messages[0].startswith("store clickhouse unavailable (refused); retrying in 0.")


def test_jitter_spreads_workers_that_lost_the_same_server() -> None:
    delays = {round(backoff_delay(5), 3) for _ in range(50)}
    assert len(delays) > 10 and min(delays) >= 4 and max(delays) <= 8


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
    assert len(sleeps) == 1
