"""The one retry policy: which errors are transient, and how long to wait them out (tenacity).

Why one module: every part that talks to a server (projection stores, the key store, the webhook
queue, tables created by several processes at once, the supervisor restarting a crashed service)
waits the same way and says so the same way.  Two rules matter everywhere:

* only *transient* errors are retried (:func:`is_transient`: the server or the connection, never
  the data); anything else is raised at once, so a bad event or a bug is never retried forever;
* waits grow exponentially up to a cap with **jitter** (a random point in the upper half of the
  current ceiling, "equal jitter"), so processes that failed together (every worker when the
  database restarts) do not all come back in the same instant.

Each wait is logged as ``"<what> unavailable (<error>); retrying in <s>s"`` before it starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_never

from careledger.backoff import FIRST_BACKOFF_S, MAX_BACKOFF_S, Backoff

log = logging.getLogger("careledger.retry")

T = TypeVar("T")

__all__ = [
    "FIRST_BACKOFF_S", "MAX_BACKOFF_S", "Backoff", "call_retrying", "is_concurrent_ddl", "is_transient",
    "retrying",
]


def is_transient(exc: BaseException) -> bool:
    """Errors worth waiting out: the server or the connection, not the data."""
    if isinstance(exc, OperationalError | PoolTimeout | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:  # imported on the first error only: most processes never load the ClickHouse driver
        from clickhouse_driver import errors as ch_errors

        if isinstance(exc, ch_errors.NetworkError | ch_errors.SocketTimeoutError):
            return True
    except ImportError:  # pragma: no cover - clickhouse-driver is a dependency
        pass
    return False


def is_concurrent_ddl(exc: BaseException) -> bool:
    """A schema change that lost a race with another process doing the same (SQLite "table already
    exists", PostgreSQL duplicate ``pg_type``/relation, a locked database): the next attempt sees
    the other process's result.  A real error (no permission, disk full) fails every attempt."""
    return isinstance(exc, OperationalError | ProgrammingError | IntegrityError)


def retrying(what: str, *, transient: Callable[[BaseException], bool] = is_transient,
             first_s: float = FIRST_BACKOFF_S, max_s: float = MAX_BACKOFF_S, attempts: int | None = None,
             give_up: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep,
             on_retry: Callable[[BaseException, float], None] | None = None,
             logger: logging.Logger = log, level: int = logging.WARNING) -> Retrying:
    """A tenacity ``Retrying`` with careledger's policy: retry while ``transient(error)`` and not
    ``give_up()`` (a stopping process), at most ``attempts`` tries (None: for as long as it takes),
    :class:`~careledger.backoff.Backoff` waits, one log line per wait.  The last error is re-raised as itself."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if on_retry is not None and exc is not None:
            on_retry(exc, wait)
        logger.log(level, "%s unavailable (%s); retrying in %.1fs", what, _describe(exc), wait)

    return Retrying(
        retry=retry_if_exception(lambda exc: transient(exc) and not give_up()),
        stop=stop_after_attempt(attempts) if attempts else stop_never,
        wait=Backoff(first_s, max_s),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def call_retrying(action: Callable[[], T], what: str, **policy: Any) -> T:
    """``action()`` under :func:`retrying` (same keyword arguments)."""
    return retrying(what, **policy)(action)


def _describe(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.splitlines()[0][:300] if text else type(exc).__name__
