"""Recognising "careledger cannot write its own state" (disk full, read-only, no permission).

The key store, the secrets and the reject reports live under ``CARELEDGER_HOME``; when one of
them cannot be written, the commands end with one clear line instead of a traceback.  Its own
module because the ingest process, its worker processes and the CSV import all ask.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sqlalchemy.exc import OperationalError

_STATE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}
_SQLITE_STATE_ERRORS = ("disk is full", "readonly database", "read-only", "unable to open database",
                        "disk i/o error")


class StateWriteError(RuntimeError):
    """The state could not be written, seen in another process (an ingest worker): ``reason`` is
    what :func:`state_write_error` said there."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def state_write_error(exc: BaseException) -> str | None:
    """A short reason when ``exc`` (or what caused it) means careledger could not write its own
    state under ``CARELEDGER_HOME`` - disk full, read-only, no permission - else None."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, StateWriteError):
            return seen.reason
        if isinstance(seen, OSError) and seen.errno in _STATE_ERRNOS:
            return os.strerror(seen.errno)  # type: ignore[arg-type]
        if isinstance(seen, OperationalError):
            text = str(seen.orig).splitlines()[0] if seen.orig is not None else ""
            if any(marker in text.lower() for marker in _SQLITE_STATE_ERRORS):
                return text
        seen = seen.__cause__ or seen.__context__
    return None


def state_error_message(command: str, home: Path, reason: str) -> str:
    return (f"{command}: cannot write careledger's state under {home}: {reason}. Free some space or "
            "make it writable; lines before the failure may already be published, and re-running the same "
            "input is safe (events are identified by event_id).")
