"""Schemathesis against the read API's own /openapi.json: every operation, every default check, zero failures.

The app is ``projections.api.app.create_app`` over a SqlStore on a temporary SQLite file holding a
small district, a stub lag probe and a fake Kafka producer (POST /api/events publishes into a
list).  Schemathesis' engine runs as ``st run`` would -- examples, coverage, fuzzing and stateful
phases, positive and negative data, all default checks (not_a_server_error, status code, content
type, response headers and schema conformance, positive data acceptance, negative data rejection,
missing required header, unsupported method, Allow header, ignored auth, use after free, resource
availability ...) -- once with an admin token and once anonymously, with a fixed seed,
deterministic generation and a bounded number of examples per operation.

One documented adjustment: ``POST /api/events`` answers 422 when some event of a schema-valid body
breaks an event rule its JSON schema cannot state (a real calendar date, a configured town, an ID
number's check digit ...); positive data acceptance accepts that 422 there.  Every figure goes to
the reliability report.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.engine import events, from_schema

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from processors.lag import LagReport
from producers.publisher import EventPublisher
from projections import open_store
from projections.api.app import create_app
from tests.support.reliability import record
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.api.conftest import district

SEED = 20240701
EXAMPLES_PER_OPERATION = 50
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default


class _Probe:
    def close(self) -> None:
        pass

    def measure(self) -> LagReport:
        return LagReport(per_projection={"sql": 0}, per_partition={"sql": {0: 0}}, end_offsets={0: 20})


def config(headers: dict[str, str]) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "workers": 1,
        "headers": headers,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
        "operations": [
            {"include-path": "/api/events", "include-method": "POST",
             "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}}},
            # a live stream never ends: read one frame (or one second), as a client would
            {"include-path": "/api/alerts/stream", "max-stream-events": 1, "request-timeout": 1},
        ],
    })


def run(app: Any, headers: dict[str, str]) -> dict[str, Any]:
    """One engine run; failures as readable lines, figures for the report."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(headers))
    operations = sum(1 for _ in schema.get_all_operations())
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    errors: list[str] = []
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    statuses[interaction.response.status_code] += 1
            for case_id, checks in recorder.checks.items():
                case = recorder.cases[case_id].value
                response = recorder.interactions.get(case_id)
                for check in checks:
                    if check.failure_info is not None:
                        status = response.response.status_code if response and response.response else None
                        failures.append(f"{recorder.label} [{check.name}] {check.failure_info.failure.title}: "
                                        f"{case.method} {case.formatted_path} query={case.query} headers={case.headers} -> {status}")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(str(getattr(event, "info", None) and event.info.message or event))
    return {"operations": operations, "requests": sum(statuses.values()), "failures": len(failures),
            "failure_lines": sorted(set(failures))[:30], "errors": errors[:10],
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "seconds": round(time.monotonic() - started, 1)}


def test_every_operation_passes_every_default_check() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = dataclasses.replace(Settings.from_env(), home=Path(tmp) / "home",
                                   sql_url=f"sqlite:///{Path(tmp) / 'projections.sqlite3'}",
                                   kafka_bootstrap="127.0.0.1:1")
        store = open_store(base.sql_url, default_rules(), topic=base.topics.events)
        store.migrate()
        store.apply_batch([Consumed(0, offset, event) for offset, event in enumerate(district())])
        publisher = EventPublisher(base, producer=FakeProducer())
        app = create_app(base, store=store, publisher=publisher, lag_probe=_Probe())
        app.state.tokens.migrate()
        admin = {"Authorization": f"Bearer {app.state.tokens.create('fuzz-admin', 'admin')}"}
        try:
            as_admin = run(app, admin)
            anonymous = run(app, {})
        finally:
            store.close()
    figures = {"operations": as_admin["operations"], "requests": as_admin["requests"] + anonymous["requests"],
               "failures": as_admin["failures"] + anonymous["failures"], "seed": SEED,
               "examples_per_operation": EXAMPLES_PER_OPERATION,
               "admin": as_admin, "anonymous": anonymous}
    record("fuzz", "HTTP API: schemathesis on /openapi.json",
           claim="{operations} operations, {requests} requests (admin and anonymous, every default check, "
                 "seed {seed}), {failures} failures",
           **figures)
    assert as_admin["errors"] == [] and anonymous["errors"] == [], (as_admin["errors"], anonymous["errors"])
    assert as_admin["operations"] >= 21
    assert figures["failures"] == 0, (as_admin["failure_lines"], anonymous["failure_lines"])
