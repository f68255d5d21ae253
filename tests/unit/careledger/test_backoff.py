"""The backoff schedule (careledger/backoff.py): capped exponential waits with equal jitter."""

from __future__ import annotations

import pytest

from careledger.backoff import Backoff


def test_backoff_bounds() -> None:
    backoff = Backoff(1.0, 60.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling(10_000) == 60.0
    assert backoff.delay(3, rand=lambda: 0.0) == 2.0 and backoff.delay(3, rand=lambda: 1.0) == 4.0
    with pytest.raises(ValueError):
        backoff.ceiling(0)
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


def test_a_tenacity_wait() -> None:
    """careledger.retrying hands it to tenacity as ``wait``: called with the retry state."""

    class State:
        attempt_number = 4

    assert Backoff(1.0, 60.0, rand=lambda: 1.0)(State()) == 8.0
