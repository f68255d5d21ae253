"""The processes' wall clock: the real time, or time shifted for a drill.

The warning sweep, escalation and the API's "today" all ask this clock, so a drill or a test can
start a worker and an API as if it were, say, 2024-07-01 08:00 in Shanghai
(``CARELEDGER_NOW=2024-07-01T08:00:00+08:00``) and watch what happens over the next minutes:
time flows on from there at its normal pace.  Audit rows, webhook retry schedules and file
timestamps keep the real time.  Production never sets ``CARELEDGER_NOW``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from careledger.settings import Settings

_offset: timedelta | None = None


def utc_now() -> datetime:
    """Now (UTC), shifted by ``Settings.pretend_now`` minus the time this process first asked."""
    global _offset
    if _offset is None:
        start = Settings.from_env().pretend_now
        _offset = (start - datetime.now(UTC)) if start is not None else timedelta(0)
    return datetime.now(UTC) + _offset


def reset() -> None:
    """Read ``CARELEDGER_NOW`` again on the next call (tests that change it in-process)."""
    global _offset
    _offset = None


__all__ = ["reset", "utc_now"]
