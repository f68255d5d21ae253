"""Waiting out transient failures: the one place that says what is transient and how long to wait.

Transient = the server or the connection, not the data (SQL operational errors, pool timeouts,
lost connections, OS-level I/O errors, ClickHouse network errors).  Anything else is deterministic
for some event and is handled by the caller (the runtime bisects down to the event).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from clickhouse_driver import errors as ch_errors
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("careledger.processor")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors worth waiting out: the server or the connection, not the data."""
    if isinstance(exc, OperationalError | PoolTimeout | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ch_errors.NetworkError | ch_errors.SocketTimeoutError)


def backoff_delay(attempt: int, *, first_s: float = FIRST_BACKOFF_S, max_s: float = MAX_BACKOFF_S,
                  jitter: Callable[[float, float], float] = random.uniform) -> float:
    """Capped exponential backoff with full jitter over its upper half (so many workers that lost the
    same server do not come back in lockstep): attempt 1 waits 0.25-0.5 s, then doubles, capped."""
    ceiling = min(max_s, first_s * 2 ** (attempt - 1))
    return jitter(ceiling / 2, ceiling)


def call_retrying(action: Callable[[], T], what: str, *, max_backoff_s: float = MAX_BACKOFF_S,
                  sleep: Callable[[float], None] = time.sleep, give_up: Callable[[], bool] = lambda: False,
                  on_retry: Callable[[], None] = lambda: None) -> T:
    """``action()``, waiting out transient failures (:func:`is_transient`) for as long as it takes,
    each logged as "<what> unavailable (...); retrying in Ns".  Other errors, and any error once
    ``give_up()`` says so (a stopping worker), are raised."""
    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc) or give_up():
                raise
            attempt += 1
            on_retry()
            delay = backoff_delay(attempt, max_s=max_backoff_s)
            log.warning("%s unavailable (%s); retrying in %.1fs", what, exc, delay)
            sleep(delay)
