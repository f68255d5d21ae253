"""The backoff schedule every retry in careledger waits by: exponential, capped, with equal jitter.

Why a module of its own, with nothing but the standard library: the supervisor
(``infra/supervise.py``) restarts crashed services by the same schedule and lives as long as they
do, one per service; importing it through :mod:`careledger.retrying` (tenacity, SQLAlchemy) cost
each supervisor ~23 MB of memory (37 → 14 MB) for a formula.  :mod:`careledger.retrying` uses this class as
tenacity's ``wait`` and remains the owner of *what* is retried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class _Attempted(Protocol):
    """What a wait needs of tenacity's ``RetryCallState``."""

    @property
    def attempt_number(self) -> int: ...


class Backoff:
    """Exponential backoff with equal jitter: after the n-th failure wait a uniformly random time in
    ``[c/2, c]`` where ``c = min(max_s, first_s * 2**(n-1))``: processes that failed together
    (every worker when the database restarts) do not all come back in the same instant."""

    def __init__(self, first_s: float = FIRST_BACKOFF_S, max_s: float = MAX_BACKOFF_S,
                 rand: Callable[[], float] = random.random) -> None:
        if first_s <= 0 or max_s < first_s:
            raise ValueError("backoff needs 0 < first_s <= max_s")
        self.first_s = first_s
        self.max_s = max_s
        self.rand = rand

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the ``attempt``-th failure (1-based), before jitter."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        return min(self.max_s, self.first_s * (2.0 ** min(attempt - 1, 60)))  # 2**n overflows for absurd n

    def delay(self, attempt: int, rand: Callable[[], float] | None = None) -> float:
        top = self.ceiling(attempt)
        return top / 2.0 + (rand or self.rand)() * top / 2.0

    def __call__(self, retry_state: _Attempted) -> float:
        """tenacity's ``wait`` protocol: the delay before the next attempt."""
        return self.delay(retry_state.attempt_number)
