"""The worker's metrics turn cumulative figures from the applier and the agent into counters."""

from __future__ import annotations

from careledger import metrics as m
from processors.metrics import WorkerMetrics


def seconds(projection: str, part: str) -> float:
    text = m.exposition()[0].decode()
    prefix = f'careledger_processor_seconds_total{{part="{part}",projection="{projection}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_time_spent_adds_what_grew_since_the_last_report() -> None:
    metrics = WorkerMetrics("time-spent-test")
    metrics.time_spent("applier", {"working": 2.0, "waiting": 0.5, "receiving": 0.0})
    metrics.time_spent("applier", {"working": 3.5, "waiting": 0.5, "receiving": 0.25})
    metrics.time_spent("applier", {"working": 3.0, "waiting": 0.5, "receiving": 0.25})  # an older report: no change
    metrics.time_spent("agent", {"collecting": 1.0, "submitting": 4.0})
    assert seconds("time-spent-test", "applier_working") == 3.5
    assert seconds("time-spent-test", "applier_waiting") == 0.5
    assert seconds("time-spent-test", "applier_receiving") == 0.25
    assert seconds("time-spent-test", "agent_submitting") == 4.0
