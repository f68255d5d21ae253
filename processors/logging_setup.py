"""Structured JSON logs for long-running processes (one object per line, to stderr).

``make up`` redirects stderr to ``$CARELEDGER_HOME/logs/<process>.log``; every line carries the
process name so logs from several workers can be merged and filtered.
"""

from __future__ import annotations

import json
import logging
import os
import time

from careledger.home_permissions import take_notices
from careledger.settings import Settings


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process_name,
            "pid": os.getpid(),
            "msg": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)  # ``extra={"trace_id": ...}`` (careledger/tracing.py)
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings, process_name: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("careledger").setLevel(level)
    for notice in take_notices():  # what the command line found before the logs existed
        logging.getLogger("careledger.home").warning(notice)
