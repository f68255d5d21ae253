"""The JSON log line carries ``trace_id`` when the caller knows the trace (careledger/tracing.py)."""

from __future__ import annotations

import json
import logging

from processors.logging_setup import JsonFormatter


def line(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("careledger.webhooks", logging.WARNING, __file__, 1, "delivery %s given up", ("d1",),
                               None)
    record.__dict__.update(extra)
    return json.loads(JsonFormatter("webhooks").format(record))


def test_trace_id_is_a_field_of_the_line_when_known() -> None:
    assert line(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    plain = line(trace_id=None)
    assert "trace_id" not in plain and plain["msg"] == "delivery d1 given up" and plain["process"] == "webhooks"
