"""The one retry policy (careledger/retrying.py): only transient errors are waited out, with capped
exponential backoff and jitter, each wait logged; everything else is raised at once."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from careledger.retrying import call_retrying, is_concurrent_ddl, is_transient


def _flaky(failures: list[BaseException], result: str = "done"):  # noqa: ANN202
    calls = {"n": 0}

    def action() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return result

    action.calls = calls  # type: ignore[attr-defined]
    return action


def test_transient_errors_are_waited_out_with_jittered_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="careledger.retry"):
        assert call_retrying(_flaky([ConnectionRefusedError("refused")] * 8), "store clickhouse",
                             max_s=16, sleep=sleeps.append) == "done"
    ceilings = [0.5, 1, 2, 4, 8, 16, 16, 16]
    assert len(sleeps) == 8
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True)), sleeps
    assert caplog.messages[0] == f"store clickhouse unavailable (refused); retrying in {sleeps[0]:.1f}s"
    assert len(caplog.messages) == 8


def test_processes_failing_together_do_not_retry_in_lockstep() -> None:
    runs = []
    for _ in range(2):
        sleeps: list[float] = []
        call_retrying(_flaky([TimeoutError()] * 5), "db", sleep=sleeps.append)
        runs.append(sleeps)
    assert runs[0] != runs[1]  # fixed doubling (the old loops) gave the same waits to every process


def test_other_errors_are_raised_at_once() -> None:
    sleeps: list[float] = []
    action = _flaky([ValueError("bad event")])
    with pytest.raises(ValueError, match="bad event"):
        call_retrying(action, "store sql", sleep=sleeps.append)
    assert sleeps == [] and action.calls["n"] == 1  # type: ignore[attr-defined]


def test_a_stopping_caller_gives_up_on_the_next_failure() -> None:
    sleeps: list[float] = []
    stopping = iter([False, True])
    with pytest.raises(ConnectionResetError):
        call_retrying(_flaky([ConnectionResetError()] * 5), "store sql", sleep=sleeps.append,
                      give_up=lambda: next(stopping))
    assert len(sleeps) == 1


def test_a_bounded_policy_raises_the_last_error_itself() -> None:
    sleeps: list[float] = []
    action = _flaky([OperationalError("CREATE", {}, Exception("locked"))] * 9)
    with pytest.raises(OperationalError):
        call_retrying(action, "tables", attempts=3, first_s=0.05, transient=is_concurrent_ddl, sleep=sleeps.append)
    assert action.calls["n"] == 3 and len(sleeps) == 2  # type: ignore[attr-defined]


def test_on_retry_sees_each_error_and_wait() -> None:
    seen: list[tuple[str, float]] = []
    call_retrying(_flaky([TimeoutError("t1"), TimeoutError("t2")]), "x", sleep=lambda _: None,
                  on_retry=lambda exc, wait: seen.append((str(exc), wait)))
    assert [text for text, _ in seen] == ["t1", "t2"]
    assert 0.25 <= seen[0][1] <= 0.5 and 0.5 <= seen[1][1] <= 1.0


def test_classification() -> None:
    assert is_transient(OperationalError("SELECT", {}, Exception("server closed the connection")))
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("bad data")) and not is_transient(KeyError("x"))
    assert is_concurrent_ddl(IntegrityError("CREATE", {}, Exception("duplicate key pg_type")))
    assert not is_concurrent_ddl(ValueError())
